/* On-disk constants of the .ebnn format (docs/native-format.md; formats/ebnn.py holds the same
   tables and tests/native/test_format_tables.py checks that they agree). */
#ifndef EBNN_FORMAT_H_
#define EBNN_FORMAT_H_

#define EBNN_MAGIC "EBNN"
#define EBNN_HEADER_SIZE 64
#define EBNN_SECTION_ENTRY_SIZE 32
#define EBNN_TENSOR_RECORD_SIZE 48
#define EBNN_OP_HEADER_SIZE 16
#define EBNN_PARAM_SIZE 8
#define EBNN_CHECKSUM_OFFSET 24
#define EBNN_ABSENT 0xFFFFFFFFu
#define EBNN_MAX_ELEMENTS 2147483647u
#define EBNN_MAX_TENSORS (1u << 20)
#define EBNN_MAX_OPS (1u << 20)
#define EBNN_MAX_GRAPH_IO 16
#define EBNN_MAX_SECTIONS 64
#define EBNN_MAX_PARAMS 64
#define EBNN_MAX_OP_INPUTS 64

enum ebnn_section_kind {
    EBNN_SECTION_TENSORS = 1,
    EBNN_SECTION_OPS = 2,
    EBNN_SECTION_GRAPH = 3,
    EBNN_SECTION_DATA = 4,
    EBNN_SECTION_METADATA = 5,
    EBNN_SECTION_STRINGS = 6,
};

enum ebnn_dtype { EBNN_F32 = 1, EBNN_BITS = 2, EBNN_I32 = 3 };

enum ebnn_param_type { EBNN_PARAM_INT32 = 1, EBNN_PARAM_FLOAT32 = 2 };

enum ebnn_opcode {
    EBNN_OP_QUANTIZE = 1,
    EBNN_OP_DEQUANTIZE = 2,
    EBNN_OP_BCONV2D = 3,
    EBNN_OP_BMAXPOOL2D = 4,
    EBNN_OP_CONV2D = 5,
    EBNN_OP_DENSE = 6,
    EBNN_OP_ADD = 7,
    EBNN_OP_SUB = 8,
    EBNN_OP_MUL = 9,
    EBNN_OP_DIV = 10,
    EBNN_OP_MAXIMUM = 11,
    EBNN_OP_MINIMUM = 12,
    EBNN_OP_CONCAT = 13,
    EBNN_OP_MAXPOOL2D = 14,
    EBNN_OP_AVGPOOL2D = 15,
    EBNN_OP_MEAN = 16,
    EBNN_OP_REDUCE_MAX = 17,
    EBNN_OP_REDUCE_SUM = 18,
    EBNN_OP_PAD = 19,
    EBNN_OP_CLIP = 20,
    EBNN_OP_PRELU = 21,
    EBNN_OP_RESHAPE = 22,
    EBNN_OP_TRANSPOSE = 23,
    EBNN_OP_SOFTMAX = 24,
    EBNN_OP_SIGN = 25,
    EBNN_OP_COUNT = 26 /* one more than the last opcode */
};

enum ebnn_param_id {
    EBNN_P_STRIDE_H = 1,
    EBNN_P_STRIDE_W = 2,
    EBNN_P_DILATION_H = 3,
    EBNN_P_DILATION_W = 4,
    EBNN_P_PAD_TOP = 5,
    EBNN_P_PAD_BOTTOM = 6,
    EBNN_P_PAD_LEFT = 7,
    EBNN_P_PAD_RIGHT = 8,
    EBNN_P_PAD_VALUE = 9,
    EBNN_P_GROUPS = 10,
    EBNN_P_CLAMP_MIN = 11,
    EBNN_P_CLAMP_MAX = 12,
    EBNN_P_OUT_MIN = 13,
    EBNN_P_OUT_MAX = 14,
    EBNN_P_KERNEL_H = 15,
    EBNN_P_KERNEL_W = 16,
    EBNN_P_COUNT_INCLUDE_PAD = 17,
    EBNN_P_AXIS = 18,
    EBNN_P_AXES = 19,
    EBNN_P_MODE = 20,
    EBNN_P_VALUE = 21,
    EBNN_P_BETA = 22,
    EBNN_P_PERM_0 = 23, /* .. 26 */
    EBNN_P_PAD_BEFORE_0 = 27, /* .. 30 */
    EBNN_P_PAD_AFTER_0 = 31, /* .. 34 */
    EBNN_P_COUNT = 35 /* one more than the last id */
};

#endif /* EBNN_FORMAT_H_ */
