/* The .ebnn loader: every offset, count, size and index is checked before it is used
   (docs/native-format.md, "Limits checked by the loader"). Reads integers with memcpy (no
   unaligned access), 64-bit sizes with overflow checks. Op-specific shape checks live in each op's
   check function (ops_*.c), called from here. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- param and op tables (the same as formats/ebnn.py) ----------------------------------------- */

typedef struct param_spec {
    const char* name;
    uint8_t type;
    bool required;
    int32_t def_i;
    float def_f;
    int64_t low, high; /* int params */
} param_spec;

#define PI(name, def, low, high) {name, EBNN_PARAM_INT32, false, def, 0.0f, low, high}
#define PI_REQ(name, low, high) {name, EBNN_PARAM_INT32, true, 0, 0.0f, low, high}
#define PF(name, def) {name, EBNN_PARAM_FLOAT32, false, 0, def, 0, 0}

static const param_spec PARAMS[EBNN_P_COUNT] = {
    [0] = {NULL, 0, false, 0, 0.0f, 0, 0},
    [EBNN_P_STRIDE_H] = PI("stride_h", 1, 1, 65535),
    [EBNN_P_STRIDE_W] = PI("stride_w", 1, 1, 65535),
    [EBNN_P_DILATION_H] = PI("dilation_h", 1, 1, 65535),
    [EBNN_P_DILATION_W] = PI("dilation_w", 1, 1, 65535),
    [EBNN_P_PAD_TOP] = PI("pad_top", 0, 0, 65535),
    [EBNN_P_PAD_BOTTOM] = PI("pad_bottom", 0, 0, 65535),
    [EBNN_P_PAD_LEFT] = PI("pad_left", 0, 0, 65535),
    [EBNN_P_PAD_RIGHT] = PI("pad_right", 0, 0, 65535),
    [EBNN_P_PAD_VALUE] = PI("pad_value", 1, 0, 1),
    [EBNN_P_GROUPS] = PI("groups", 1, 1, 65535),
    [EBNN_P_CLAMP_MIN] = PI("clamp_min", INT32_MIN, INT32_MIN, INT32_MAX),
    [EBNN_P_CLAMP_MAX] = PI("clamp_max", INT32_MAX, INT32_MIN, INT32_MAX),
    [EBNN_P_OUT_MIN] = PF("out_min", -INFINITY),
    [EBNN_P_OUT_MAX] = PF("out_max", INFINITY),
    [EBNN_P_KERNEL_H] = PI_REQ("kernel_h", 1, 65535),
    [EBNN_P_KERNEL_W] = PI_REQ("kernel_w", 1, 65535),
    [EBNN_P_COUNT_INCLUDE_PAD] = PI("count_include_pad", 0, 0, 1),
    [EBNN_P_AXIS] = PI_REQ("axis", 1, EBNN_MAX_RANK - 1),
    [EBNN_P_AXES] = PI_REQ("axes", 2, (1 << EBNN_MAX_RANK) - 2),
    [EBNN_P_MODE] = PI("mode", 0, 0, 2),
    [EBNN_P_VALUE] = PF("value", 0.0f),
    [EBNN_P_BETA] = PF("beta", 1.0f),
    [EBNN_P_PERM_0] = PI_REQ("perm_0", 0, EBNN_MAX_RANK - 1),
    [EBNN_P_PERM_0 + 1] = PI_REQ("perm_1", 0, EBNN_MAX_RANK - 1),
    [EBNN_P_PERM_0 + 2] = PI_REQ("perm_2", 0, EBNN_MAX_RANK - 1),
    [EBNN_P_PERM_0 + 3] = PI_REQ("perm_3", 0, EBNN_MAX_RANK - 1),
    [EBNN_P_PAD_BEFORE_0] = PI("pad_before_0", 0, 0, 65535),
    [EBNN_P_PAD_BEFORE_0 + 1] = PI("pad_before_1", 0, 0, 65535),
    [EBNN_P_PAD_BEFORE_0 + 2] = PI("pad_before_2", 0, 0, 65535),
    [EBNN_P_PAD_BEFORE_0 + 3] = PI("pad_before_3", 0, 0, 65535),
    [EBNN_P_PAD_AFTER_0] = PI("pad_after_0", 0, 0, 65535),
    [EBNN_P_PAD_AFTER_0 + 1] = PI("pad_after_1", 0, 0, 65535),
    [EBNN_P_PAD_AFTER_0 + 2] = PI("pad_after_2", 0, 0, 65535),
    [EBNN_P_PAD_AFTER_0 + 3] = PI("pad_after_3", 0, 0, 65535),
};

#define BIT(id) (1ull << (id))
#define CONV_GEOMETRY                                                                        \
    (BIT(EBNN_P_STRIDE_H) | BIT(EBNN_P_STRIDE_W) | BIT(EBNN_P_DILATION_H) |                  \
     BIT(EBNN_P_DILATION_W) | BIT(EBNN_P_PAD_TOP) | BIT(EBNN_P_PAD_BOTTOM) |                 \
     BIT(EBNN_P_PAD_LEFT) | BIT(EBNN_P_PAD_RIGHT))
#define POOL_GEOMETRY                                                                        \
    (BIT(EBNN_P_KERNEL_H) | BIT(EBNN_P_KERNEL_W) | BIT(EBNN_P_STRIDE_H) | BIT(EBNN_P_STRIDE_W) | \
     BIT(EBNN_P_PAD_TOP) | BIT(EBNN_P_PAD_BOTTOM) | BIT(EBNN_P_PAD_LEFT) | BIT(EBNN_P_PAD_RIGHT))
#define OUT_CLAMP (BIT(EBNN_P_OUT_MIN) | BIT(EBNN_P_OUT_MAX))
#define PERMS (BIT(EBNN_P_PERM_0) | BIT(EBNN_P_PERM_0 + 1) | BIT(EBNN_P_PERM_0 + 2) | BIT(EBNN_P_PERM_0 + 3))
#define PADS                                                                                 \
    (BIT(EBNN_P_PAD_BEFORE_0) | BIT(EBNN_P_PAD_BEFORE_0 + 1) | BIT(EBNN_P_PAD_BEFORE_0 + 2) |    \
     BIT(EBNN_P_PAD_BEFORE_0 + 3) | BIT(EBNN_P_PAD_AFTER_0) | BIT(EBNN_P_PAD_AFTER_0 + 1) |      \
     BIT(EBNN_P_PAD_AFTER_0 + 2) | BIT(EBNN_P_PAD_AFTER_0 + 3))

typedef struct op_spec {
    const char* name;
    uint8_t min_inputs, max_inputs;
    uint64_t params; /* bit per accepted param id */
    uint64_t optional_inputs; /* bit per input index that may be absent */
    const ebnn_op_impl* impl;
} op_spec;

static const op_spec OPS[EBNN_OP_COUNT] = {
    [EBNN_OP_QUANTIZE] = {"QUANTIZE", 1, 3, 0, 0x6, &ebnn_impl_quantize},
    [EBNN_OP_DEQUANTIZE] = {"DEQUANTIZE", 1, 1, 0, 0, &ebnn_impl_dequantize},
    [EBNN_OP_BCONV2D] = {"BCONV2D", 2, 5,
                         CONV_GEOMETRY | BIT(EBNN_P_PAD_VALUE) | BIT(EBNN_P_GROUPS) |
                             BIT(EBNN_P_CLAMP_MIN) | BIT(EBNN_P_CLAMP_MAX) | OUT_CLAMP,
                         0x1c, &ebnn_impl_bconv2d},
    [EBNN_OP_BMAXPOOL2D] = {"BMAXPOOL2D", 1, 1, POOL_GEOMETRY, 0, &ebnn_impl_bmaxpool2d},
    [EBNN_OP_CONV2D] = {"CONV2D", 2, 3, CONV_GEOMETRY | BIT(EBNN_P_GROUPS) | OUT_CLAMP, 0x4,
                        &ebnn_impl_conv2d},
    [EBNN_OP_DENSE] = {"DENSE", 2, 3, OUT_CLAMP, 0x4, &ebnn_impl_dense},
    [EBNN_OP_ADD] = {"ADD", 2, 2, OUT_CLAMP, 0, &ebnn_impl_elementwise},
    [EBNN_OP_SUB] = {"SUB", 2, 2, OUT_CLAMP, 0, &ebnn_impl_elementwise},
    [EBNN_OP_MUL] = {"MUL", 2, 2, OUT_CLAMP, 0, &ebnn_impl_elementwise},
    [EBNN_OP_DIV] = {"DIV", 2, 2, OUT_CLAMP, 0, &ebnn_impl_elementwise},
    [EBNN_OP_MAXIMUM] = {"MAXIMUM", 2, 2, OUT_CLAMP, 0, &ebnn_impl_elementwise},
    [EBNN_OP_MINIMUM] = {"MINIMUM", 2, 2, OUT_CLAMP, 0, &ebnn_impl_elementwise},
    [EBNN_OP_CONCAT] = {"CONCAT", 1, EBNN_MAX_OP_INPUTS, BIT(EBNN_P_AXIS), 0, &ebnn_impl_concat},
    [EBNN_OP_MAXPOOL2D] = {"MAXPOOL2D", 1, 1, POOL_GEOMETRY, 0, &ebnn_impl_maxpool2d},
    [EBNN_OP_AVGPOOL2D] = {"AVGPOOL2D", 1, 1, POOL_GEOMETRY | BIT(EBNN_P_COUNT_INCLUDE_PAD), 0,
                           &ebnn_impl_avgpool2d},
    [EBNN_OP_MEAN] = {"MEAN", 1, 1, BIT(EBNN_P_AXES), 0, &ebnn_impl_reduce},
    [EBNN_OP_REDUCE_MAX] = {"REDUCE_MAX", 1, 1, BIT(EBNN_P_AXES), 0, &ebnn_impl_reduce},
    [EBNN_OP_REDUCE_SUM] = {"REDUCE_SUM", 1, 1, BIT(EBNN_P_AXES), 0, &ebnn_impl_reduce},
    [EBNN_OP_PAD] = {"PAD", 1, 1, PADS | BIT(EBNN_P_VALUE) | BIT(EBNN_P_MODE), 0, &ebnn_impl_pad},
    [EBNN_OP_CLIP] = {"CLIP", 1, 1, OUT_CLAMP, 0, &ebnn_impl_clip},
    [EBNN_OP_PRELU] = {"PRELU", 2, 2, 0, 0, &ebnn_impl_prelu},
    [EBNN_OP_RESHAPE] = {"RESHAPE", 1, 1, 0, 0, &ebnn_impl_reshape},
    [EBNN_OP_TRANSPOSE] = {"TRANSPOSE", 1, 1, PERMS, 0, &ebnn_impl_transpose},
    [EBNN_OP_SOFTMAX] = {"SOFTMAX", 1, 1, BIT(EBNN_P_BETA), 0, &ebnn_impl_softmax},
    [EBNN_OP_SIGN] = {"SIGN", 1, 1, 0, 0, &ebnn_impl_sign},
};

const ebnn_op_impl* ebnn_op_impl_for(uint16_t code) {
    return code > 0 && code < EBNN_OP_COUNT ? OPS[code].impl : NULL;
}

/* --- little-endian reads inside bounds ------------------------------------------------------- */

static uint16_t rd16(const uint8_t* p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const uint8_t* p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t* p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
static float rdf32(const uint8_t* p) {
    uint32_t bits = rd32(p);
    float value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

/* CRC-32 (zlib polynomial), table built on the stack for each call. */
static uint32_t crc32_update(const uint32_t* table, uint32_t crc, const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xffu] ^ (crc >> 8);
    return crc;
}
static uint32_t file_crc32(const uint8_t* data, size_t size) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    static const uint8_t zeros[4] = {0, 0, 0, 0};
    uint32_t crc = 0xFFFFFFFFu;
    crc = crc32_update(table, crc, data, EBNN_CHECKSUM_OFFSET);
    crc = crc32_update(table, crc, zeros, 4);
    crc = crc32_update(table, crc, data + EBNN_CHECKSUM_OFFSET + 4, size - EBNN_CHECKSUM_OFFSET - 4);
    return crc ^ 0xFFFFFFFFu;
}

typedef struct section {
    bool present;
    uint64_t offset, size;
} section;

static const char* SECTION_NAMES[] = {"", "TENSORS", "OPS", "GRAPH", "DATA", "METADATA", "STRINGS"};

#define FAIL(status, ...) MODEL_FAIL(model, status, __VA_ARGS__)

static bool name_in_strings(const section* strings, uint32_t offset, uint32_t length) {
    if (length == 0) return true;
    return strings->present && (uint64_t)offset + length <= strings->size;
}

size_t ebnn_out_size(size_t in, size_t kernel, size_t stride, size_t dilation, size_t before,
                     size_t after) {
    /* every input is at most 2^32 and every param at most 65535: no overflow in 64 bits */
    const uint64_t effective = (uint64_t)(kernel - 1) * dilation + 1;
    const uint64_t padded = (uint64_t)in + before + after;
    if (kernel == 0 || stride == 0 || padded < effective) return 0;
    return (size_t)((padded - effective) / stride + 1);
}

ebnn_status ebnn_parse(ebnn_model* model, uint32_t flags) {
    const uint8_t* file = model->file;
    const size_t available = model->file_size;
    if (available < 4 || memcmp(file, EBNN_MAGIC, 4) != 0) {
        return FAIL(EBNN_ERROR_FORMAT, "not a native .ebnn model (no EBNN magic)");
    }
    if (available < EBNN_HEADER_SIZE) {
        return FAIL(EBNN_ERROR_FORMAT, "truncated: %zu bytes, the header alone is %d", available,
                    EBNN_HEADER_SIZE);
    }
    const uint16_t major = rd16(file + 4), minor = rd16(file + 6);
    if (major != EBNN_FORMAT_MAJOR) {
        return FAIL(EBNN_ERROR_VERSION,
                    "format version %u.%u is %s this library's %d.x: %s", major, minor,
                    major > EBNN_FORMAT_MAJOR ? "newer than" : "older than", EBNN_FORMAT_MAJOR,
                    major > EBNN_FORMAT_MAJOR ? "update edgebnn" : "convert the model again");
    }
    const uint32_t header_size = rd32(file + 8), header_flags = rd32(file + 12);
    const uint64_t file_size = rd64(file + 16);
    if (header_size != EBNN_HEADER_SIZE || header_flags != 0) {
        return FAIL(EBNN_ERROR_FORMAT, "bad header (size %u, flags %u)", header_size, header_flags);
    }
    if (file_size > available) {
        return FAIL(EBNN_ERROR_FORMAT, "truncated: the header says %llu bytes, got %zu",
                    (unsigned long long)file_size, available);
    }
    if (file_size < EBNN_HEADER_SIZE) {
        return FAIL(EBNN_ERROR_FORMAT, "bad file size %llu", (unsigned long long)file_size);
    }
    const size_t size = (size_t)file_size;
    model->file_size = size;
    if (!(flags & EBNN_LOAD_NO_CHECKSUM)) {
        const uint32_t expected = rd32(file + EBNN_CHECKSUM_OFFSET), actual = file_crc32(file, size);
        if (expected != actual) {
            return FAIL(EBNN_ERROR_CHECKSUM,
                        "checksum mismatch: the file is corrupt (stored %08x, computed %08x)",
                        expected, actual);
        }
    }
    for (size_t i = 40; i < EBNN_HEADER_SIZE; ++i) {
        if (file[i] != 0) return FAIL(EBNN_ERROR_FORMAT, "reserved header bytes are not zero");
    }
    const uint32_t section_count = rd32(file + 28);
    const uint64_t table = rd64(file + 32);
    if (section_count < 1 || section_count > EBNN_MAX_SECTIONS || table < EBNN_HEADER_SIZE ||
        table % 8 != 0 || table > size || (size - table) / EBNN_SECTION_ENTRY_SIZE < section_count) {
        return FAIL(EBNN_ERROR_FORMAT, "bad section table (%u entries at offset %llu)", section_count,
                    (unsigned long long)table);
    }
    section sections[7];
    memset(sections, 0, sizeof(sections));
    uint64_t spans[EBNN_MAX_SECTIONS + 2][2];
    size_t n_spans = 0;
    spans[n_spans][0] = 0;
    spans[n_spans++][1] = EBNN_HEADER_SIZE;
    spans[n_spans][0] = table;
    spans[n_spans++][1] = table + (uint64_t)section_count * EBNN_SECTION_ENTRY_SIZE;
    for (uint32_t i = 0; i < section_count; ++i) {
        const uint8_t* entry = file + table + (size_t)i * EBNN_SECTION_ENTRY_SIZE;
        const uint32_t kind = rd32(entry), sflags = rd32(entry + 4);
        const uint64_t offset = rd64(entry + 8), length = rd64(entry + 16), reserved = rd64(entry + 24);
        if (kind < 1 || kind > 6) continue; /* a section of a newer minor version */
        const uint64_t align = kind == EBNN_SECTION_DATA ? 64 : 8;
        if (sflags != 0 || reserved != 0 || offset % align != 0 || offset < EBNN_HEADER_SIZE ||
            length > size || offset > size - length) {
            return FAIL(EBNN_ERROR_FORMAT,
                        "section %s is out of bounds or misaligned (offset %llu, size %llu)",
                        SECTION_NAMES[kind], (unsigned long long)offset, (unsigned long long)length);
        }
        if (sections[kind].present) {
            return FAIL(EBNN_ERROR_FORMAT, "section %s appears twice", SECTION_NAMES[kind]);
        }
        for (size_t s = 0; s < n_spans; ++s) {
            if (offset < spans[s][1] && spans[s][0] < offset + length) {
                return FAIL(EBNN_ERROR_FORMAT, "section %s overlaps another part of the file",
                            SECTION_NAMES[kind]);
            }
        }
        spans[n_spans][0] = offset;
        spans[n_spans++][1] = offset + length;
        sections[kind].present = true;
        sections[kind].offset = offset;
        sections[kind].size = length;
    }
    for (int kind = EBNN_SECTION_TENSORS; kind <= EBNN_SECTION_GRAPH; ++kind) {
        if (!sections[kind].present) {
            return FAIL(EBNN_ERROR_FORMAT, "section %s is missing", SECTION_NAMES[kind]);
        }
    }
    const section* strings = &sections[EBNN_SECTION_STRINGS];
    const section* data = &sections[EBNN_SECTION_DATA];
    if (sections[EBNN_SECTION_METADATA].present) {
        model->metadata = (const char*)file + sections[EBNN_SECTION_METADATA].offset;
        model->metadata_size = (size_t)sections[EBNN_SECTION_METADATA].size;
    }

    /* --- tensors --- */
    const section* ts = &sections[EBNN_SECTION_TENSORS];
    if (ts->size < 8) return FAIL(EBNN_ERROR_FORMAT, "TENSORS section is truncated");
    const uint8_t* tp = file + ts->offset;
    const uint32_t n_tensors = rd32(tp);
    if (n_tensors < 1 || n_tensors > EBNN_MAX_TENSORS ||
        ts->size != 8 + (uint64_t)n_tensors * EBNN_TENSOR_RECORD_SIZE) {
        return FAIL(EBNN_ERROR_FORMAT, "TENSORS section holds %llu bytes, not %u tensors",
                    (unsigned long long)ts->size, n_tensors);
    }
    model->tensors = calloc(n_tensors, sizeof(ebnn_tensor));
    if (model->tensors == NULL) return FAIL(EBNN_ERROR_MEMORY, "out of memory for %u tensors", n_tensors);
    model->n_tensors = n_tensors;
    for (uint32_t i = 0; i < n_tensors; ++i) {
        const uint8_t* r = tp + 8 + (size_t)i * EBNN_TENSOR_RECORD_SIZE;
        ebnn_tensor* t = &model->tensors[i];
        const uint32_t name_offset = rd32(r), name_length = rd32(r + 4);
        if (!name_in_strings(strings, name_offset, name_length)) {
            return FAIL(EBNN_ERROR_FORMAT, "tensor %u: name out of bounds of STRINGS", i);
        }
        t->name = name_length ? (const char*)file + strings->offset + name_offset : "";
        t->name_len = name_length;
        t->dtype = r[8];
        t->rank = r[9];
        const uint16_t tflags = rd16(r + 10);
        const uint32_t reserved = rd32(r + 28);
        const uint64_t offset = rd64(r + 32), length = rd64(r + 40);
        if (t->dtype < EBNN_F32 || t->dtype > EBNN_I32) {
            return FAIL(EBNN_ERROR_FORMAT, "tensor %u '%.*s': unknown dtype %u", i, (int)t->name_len,
                        t->name, t->dtype);
        }
        if (t->rank > EBNN_MAX_RANK || (tflags & ~1u) != 0 || reserved != 0) {
            return FAIL(EBNN_ERROR_FORMAT, "tensor %u '%.*s': bad rank %u or flags %u", i,
                        (int)t->name_len, t->name, t->rank, tflags);
        }
        uint64_t elems = 1;
        for (int d = 0; d < EBNN_MAX_RANK; ++d) {
            t->dims[d] = rd32(r + 12 + 4 * d);
            if ((d < t->rank && t->dims[d] == 0) || (d >= t->rank && t->dims[d] != 0)) {
                return FAIL(EBNN_ERROR_FORMAT, "tensor %u '%.*s': bad size %u on axis %d", i,
                            (int)t->name_len, t->name, t->dims[d], d);
            }
            if (d < t->rank) {
                elems *= t->dims[d]; /* < 2^31 * 2^32 before the check below */
                if (elems > EBNN_MAX_ELEMENTS) {
                    return FAIL(EBNN_ERROR_FORMAT,
                                "tensor %u '%.*s': more than 2^31-1 elements", i, (int)t->name_len,
                                t->name);
                }
            }
        }
        t->elems = (size_t)elems;
        t->is_const = tflags & 1;
        uint64_t storage; /* file bytes */
        if (t->dtype == EBNN_BITS) {
            if (t->rank == 0) {
                return FAIL(EBNN_ERROR_FORMAT, "tensor %u '%.*s': bits need at least one axis", i,
                            (int)t->name_len, t->name);
            }
            t->row_len = t->dims[t->rank - 1];
            t->rows = t->elems / t->row_len;
            t->words = div_up(t->row_len, 64);
            storage = 4ull * t->rows * div_up(t->row_len, 32);
            t->bytes = 8 * t->rows * t->words;
        } else {
            t->rows = 1;
            t->row_len = t->elems;
            storage = 4ull * t->elems;
            t->bytes = 4 * t->elems;
        }
        if (t->is_const) {
            if (!data->present || length != storage || offset % 64 != 0 || offset > data->size ||
                length > data->size - offset) {
                return FAIL(EBNN_ERROR_FORMAT,
                            "tensor %u '%.*s': data (offset %llu, size %llu) must be %llu bytes, "
                            "64-aligned, inside the DATA section",
                            i, (int)t->name_len, t->name, (unsigned long long)offset,
                            (unsigned long long)length, (unsigned long long)storage);
            }
            t->data = file + data->offset + offset;
        } else if (offset != 0 || length != 0) {
            return FAIL(EBNN_ERROR_FORMAT, "tensor %u '%.*s': an activation has no data", i,
                        (int)t->name_len, t->name);
        }
        t->first = INT_MAX;
        t->last = -1;
    }

    /* --- graph --- */
    const section* gs = &sections[EBNN_SECTION_GRAPH];
    if (gs->size < 8) return FAIL(EBNN_ERROR_FORMAT, "GRAPH section is truncated");
    const uint8_t* gp = file + gs->offset;
    const uint32_t n_in = rd32(gp), n_out = rd32(gp + 4);
    if (n_in < 1 || n_in > EBNN_MAX_GRAPH_IO || n_out < 1 || n_out > EBNN_MAX_GRAPH_IO ||
        gs->size != 8 + 4ull * (n_in + n_out)) {
        return FAIL(EBNN_ERROR_FORMAT, "GRAPH section: bad counts (%u inputs, %u outputs)", n_in,
                    n_out);
    }
    model->graph_inputs = calloc(n_in, sizeof(int32_t));
    model->graph_outputs = calloc(n_out, sizeof(int32_t));
    if (model->graph_inputs == NULL || model->graph_outputs == NULL) {
        return FAIL(EBNN_ERROR_MEMORY, "out of memory");
    }
    model->n_graph_inputs = n_in;
    model->n_graph_outputs = n_out;
    for (uint32_t i = 0; i < n_in + n_out; ++i) {
        const uint32_t index = rd32(gp + 8 + 4 * i);
        if (index >= n_tensors || model->tensors[index].is_const ||
            model->tensors[index].dtype != EBNN_F32) {
            return FAIL(EBNN_ERROR_FORMAT, "graph %s %u must be a float32 activation",
                        i < n_in ? "input" : "output", index);
        }
        if (i < n_in) {
            ebnn_tensor* t = &model->tensors[index];
            if (t->rank < 1 || t->dims[0] != 1) {
                return FAIL(EBNN_ERROR_FORMAT, "graph input %u must have batch size 1 on axis 0", index);
            }
            if (t->first == -1) {
                return FAIL(EBNN_ERROR_FORMAT, "graph input %u is listed twice", index);
            }
            t->first = -1; /* produced before the first op */
            model->graph_inputs[i] = (int32_t)index;
        } else {
            model->graph_outputs[i - n_in] = (int32_t)index;
        }
    }

    /* --- ops --- */
    const section* os = &sections[EBNN_SECTION_OPS];
    if (os->size < 8) return FAIL(EBNN_ERROR_FORMAT, "OPS section is truncated");
    const uint8_t* op_base = file + os->offset;
    const uint32_t n_ops = rd32(op_base);
    if (n_ops > EBNN_MAX_OPS || n_ops > os->size / EBNN_OP_HEADER_SIZE) {
        return FAIL(EBNN_ERROR_FORMAT, "OPS section claims %u ops in %llu bytes", n_ops,
                    (unsigned long long)os->size);
    }
    model->ops = calloc(n_ops > 0 ? n_ops : 1, sizeof(ebnn_op));
    if (model->ops == NULL) return FAIL(EBNN_ERROR_MEMORY, "out of memory for %u ops", n_ops);
    model->n_ops = n_ops;
    uint64_t cursor = 8;
    for (uint32_t k = 0; k < n_ops; ++k) {
        ebnn_op* op = &model->ops[k];
        op->index = (int)k;
        op->output = -1;
        if (os->size - cursor < EBNN_OP_HEADER_SIZE) {
            return FAIL(EBNN_ERROR_FORMAT, "op %u: record out of bounds of the OPS section", k);
        }
        const uint8_t* r = op_base + cursor;
        op->code = rd16(r);
        const uint32_t ni = r[2], no = r[3], np = rd16(r + 4), reserved = rd16(r + 6);
        const uint32_t name_offset = rd32(r + 8), name_length = rd32(r + 12);
        if (op->code == 0 || op->code >= EBNN_OP_COUNT) {
            return FAIL(EBNN_ERROR_FORMAT, "op %u: unknown opcode %u (a newer format?)", k, op->code);
        }
        const op_spec* spec = &OPS[op->code];
        op->impl = spec->impl;
        if (!name_in_strings(strings, name_offset, name_length)) {
            return FAIL(EBNN_ERROR_FORMAT, "op %u (%s): name out of bounds of STRINGS", k, spec->name);
        }
        op->name = name_length ? (const char*)file + strings->offset + name_offset : "";
        op->name_len = name_length;
        op->name_owned = calloc(1, (size_t)name_length + 1);
        if (op->name_owned == NULL) return FAIL(EBNN_ERROR_MEMORY, "out of memory");
        memcpy(op->name_owned, op->name, name_length);
        char label[160];
        ebnn_op_label(model, op, label, sizeof(label));
        const uint64_t record = EBNN_OP_HEADER_SIZE + 4ull * (ni + no) + (uint64_t)EBNN_PARAM_SIZE * np;
        if (reserved != 0 || no != 1 || np > EBNN_MAX_PARAMS || os->size - cursor < record) {
            return FAIL(EBNN_ERROR_FORMAT, "%s: bad record (%u inputs, %u outputs, %u params)", label,
                        ni, no, np);
        }
        /* inputs: absent ones at the end are left off */
        uint32_t count = ni;
        while (count > 0 && rd32(r + 16 + 4 * (count - 1)) == EBNN_ABSENT) --count;
        if (count < spec->min_inputs || count > spec->max_inputs) {
            return FAIL(EBNN_ERROR_FORMAT, "%s: takes %u to %u inputs, got %u", label,
                        spec->min_inputs, spec->max_inputs, count);
        }
        op->n_inputs = count;
        op->inputs = calloc(count > 0 ? count : 1, sizeof(int32_t));
        if (op->inputs == NULL) return FAIL(EBNN_ERROR_MEMORY, "out of memory");
        for (uint32_t i = 0; i < count; ++i) {
            const uint32_t index = rd32(r + 16 + 4 * i);
            if (index == EBNN_ABSENT) {
                if (i >= 64 || !((spec->optional_inputs >> i) & 1)) {
                    return FAIL(EBNN_ERROR_FORMAT, "%s: input %u is required", label, i);
                }
                op->inputs[i] = -1;
                continue;
            }
            if (index >= n_tensors) {
                return FAIL(EBNN_ERROR_FORMAT, "%s: input tensor %u does not exist", label, index);
            }
            ebnn_tensor* t = &model->tensors[index];
            if (!t->is_const && t->first == INT_MAX) {
                return FAIL(EBNN_ERROR_FORMAT, "%s: reads tensor %u before it is produced", label, index);
            }
            if (!t->is_const) t->last = (int)k;
            op->inputs[i] = (int32_t)index;
        }
        const uint32_t out = rd32(r + 16 + 4 * ni);
        if (out >= n_tensors || model->tensors[out].is_const || model->tensors[out].first != INT_MAX) {
            return FAIL(EBNN_ERROR_FORMAT, "%s: output tensor %u must be a new activation", label, out);
        }
        op->output = (int32_t)out;
        model->tensors[out].first = (int)k;
        model->tensors[out].last = (int)k;
        /* params */
        for (int id = 1; id < EBNN_P_COUNT; ++id) {
            op->ip[id] = PARAMS[id].def_i;
            op->fp[id] = PARAMS[id].def_f;
        }
        const uint8_t* pp = r + 16 + 4 * (ni + no);
        for (uint32_t j = 0; j < np; ++j) {
            const uint16_t id = rd16(pp + 8 * j), type = rd16(pp + 8 * j + 2);
            if (id == 0 || id >= EBNN_P_COUNT || !((spec->params >> id) & 1)) {
                return FAIL(EBNN_ERROR_FORMAT, "%s: parameter id %u (%s) does not belong to %s", label,
                            id, id > 0 && id < EBNN_P_COUNT ? PARAMS[id].name : "unknown", spec->name);
            }
            const param_spec* ps = &PARAMS[id];
            if (type != ps->type) {
                return FAIL(EBNN_ERROR_FORMAT, "%s: parameter %s has the wrong type %u", label,
                            ps->name, type);
            }
            if (op->given[id]) {
                return FAIL(EBNN_ERROR_FORMAT, "%s: parameter %s is given twice", label, ps->name);
            }
            op->given[id] = true;
            if (type == EBNN_PARAM_INT32) {
                const int32_t value = (int32_t)rd32(pp + 8 * j + 4);
                if (value < ps->low || value > ps->high) {
                    return FAIL(EBNN_ERROR_FORMAT, "%s: parameter %s = %d is out of range [%lld, %lld]",
                                label, ps->name, value, (long long)ps->low, (long long)ps->high);
                }
                op->ip[id] = value;
            } else {
                const float value = rdf32(pp + 8 * j + 4);
                if (isnan(value)) {
                    return FAIL(EBNN_ERROR_FORMAT, "%s: parameter %s is NaN", label, ps->name);
                }
                op->fp[id] = value;
            }
        }
        for (int id = 1; id < EBNN_P_COUNT; ++id) {
            if (((spec->params >> id) & 1) && PARAMS[id].required && !op->given[id]) {
                /* perm_i is required only up to the input's rank: TRANSPOSE checks it itself */
                if (id >= EBNN_P_PERM_0 && id < EBNN_P_PERM_0 + 4) continue;
                return FAIL(EBNN_ERROR_FORMAT, "%s: parameter %s is required", label, PARAMS[id].name);
            }
        }
        if (op->fp[EBNN_P_OUT_MIN] > op->fp[EBNN_P_OUT_MAX]) {
            return FAIL(EBNN_ERROR_FORMAT, "%s: out_min %g is larger than out_max %g", label,
                        (double)op->fp[EBNN_P_OUT_MIN], (double)op->fp[EBNN_P_OUT_MAX]);
        }
        cursor += record;
        ebnn_status status = op->impl->check(model, op);
        if (status != EBNN_OK) return status;
        ebnn_tensor* o = &model->tensors[out];
        if (o->rank < 1 || o->dims[0] != 1) {
            return FAIL(EBNN_ERROR_FORMAT, "%s: activations must keep the batch size 1 on axis 0", label);
        }
    }
    if (cursor != os->size) {
        return FAIL(EBNN_ERROR_FORMAT, "OPS section has %llu bytes after its last op",
                    (unsigned long long)(os->size - cursor));
    }
    for (size_t i = 0; i < model->n_graph_outputs; ++i) {
        ebnn_tensor* t = &model->tensors[model->graph_outputs[i]];
        if (t->first == INT_MAX) {
            return FAIL(EBNN_ERROR_FORMAT, "graph output %d is never produced", model->graph_outputs[i]);
        }
        t->last = (int)n_ops; /* alive until the outputs are copied */
    }
    return EBNN_OK;
}

ebnn_status ebnn_op_fail(ebnn_model* model, const ebnn_op* op, const char* format, ...) {
    char label[160], detail[400];
    ebnn_op_label(model, op, label, sizeof(label));
    va_list args;
    va_start(args, format);
    vsnprintf(detail, sizeof(detail), format, args);
    va_end(args);
    snprintf(model->error, sizeof(model->error), "%.150s: %.350s", label, detail);
    return EBNN_ERROR_FORMAT;
}

void ebnn_op_label(const ebnn_model* model, const ebnn_op* op, char* buffer, size_t size) {
    (void)model;
    const char* type = op->code > 0 && op->code < EBNN_OP_COUNT ? OPS[op->code].name : "?";
    if (op->name_len > 0) {
        snprintf(buffer, size, "op %d (%s '%.*s')", op->index, type,
                 (int)(op->name_len > 80 ? 80 : op->name_len), op->name);
    } else {
        snprintf(buffer, size, "op %d (%s)", op->index, type);
    }
}

const char* ebnn_op_type_name(uint16_t code) {
    return code > 0 && code < EBNN_OP_COUNT ? OPS[code].name : "?";
}
