/* Error messages: the one formatting helper every module reports failures through. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

ebnn_status ebnn_fail(char* buffer, size_t size, ebnn_status status, const char* format, ...) {
    if (buffer != NULL && size > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(buffer, size, format, args);
        va_end(args);
    }
    return status;
}
