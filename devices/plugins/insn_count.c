/*
 * edgebnn instruction counter: a QEMU TCG plugin (qemu-user, API version 1: QEMU 7.2) that counts
 * the guest instructions a program executes, and the exact count at every edgebnn marker.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the edgebnn authors.
 *
 * This file is licensed under the GNU General Public License, version 2 or (at your option) any
 * later version, because it is built against QEMU's qemu-plugin.h (GPL-2.0-or-later) and runs
 * inside QEMU. It is a separate program from the rest of edgebnn (Apache-2.0), which only starts
 * QEMU with it and reads the JSON file it writes. See devices/plugins/README.md.
 *
 *   qemu-aarch64 -cpu cortex-a72 -plugin ./libinsncount.so,out=counts.json PROGRAM ARGS...
 *
 * Counting: each translated block adds its instruction count to one counter when it starts
 * (an inline add, as QEMU's own "insn" example plugin does), which is exact in qemu-user: a block
 * runs to its end or raises a guest signal. Markers: the aarch64 instructions HINT #0x70..#0x74
 * (NOPs on every CPU; edgebnn's ebnn_count_marker emits them) get an execution callback that
 * records (kind, count up to and including the marker, vCPU). The counter is shared: the counts
 * are exact when one guest thread runs (the JSON says how many vCPUs existed).
 *
 * Output (at exit): {"format": "edgebnn-insn-count/1", "target": ..., "total": N,
 *   "vcpus": V, "events": [[kind, count, vcpu], ...], "dropped": D}
 *
 * A developer's profile: with hot=FILE the plugin also writes, per translated block, its guest
 * address, its instruction count and how often it ran ("ADDRESS INSNS EXECUTIONS" lines), so the
 * instructions can be attributed to functions with the program's symbol table (nm). Slower.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define HINT_BASE 0xd503201fu /* HINT #imm: 0xd503201f | imm << 5 */
#define FIRST_MARK 0x70u
#define MARKS 5u
#define MAX_EVENTS (1u << 20)

typedef struct marker {
    uint64_t after; /* instructions of its block after the marker (already added at block start) */
    unsigned kind;
} marker;

typedef struct event {
    uint64_t count;
    uint32_t kind, vcpu;
} event;

static uint64_t count; /* incremented inline by every executed block */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static event* events;
static size_t n_events, dropped;
static unsigned vcpus;
static char out_path[4096];
static char hot_path[4096];

typedef struct block {
    uint64_t vaddr, insns, executions;
    struct block* next;
} block;
static block* blocks; /* every translation (a block translated twice appears twice) */

static void on_block(unsigned int vcpu_index, void* userdata) {
    (void)vcpu_index;
    ((block*)userdata)->executions += 1; /* one thread when counting: no lock */
}
static char target[64];

static void on_marker(unsigned int vcpu_index, void* userdata) {
    const marker* m = userdata;
    pthread_mutex_lock(&lock);
    if (n_events < MAX_EVENTS) {
        events[n_events].count = count - m->after;
        events[n_events].kind = m->kind;
        events[n_events].vcpu = vcpu_index;
        ++n_events;
    } else {
        ++dropped;
    }
    pthread_mutex_unlock(&lock);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &count, n);
    if (hot_path[0] != '\0') {
        block* b = calloc(1, sizeof(*b));
        if (b != NULL) {
            b->vaddr = qemu_plugin_tb_vaddr(tb);
            b->insns = n;
            pthread_mutex_lock(&lock);
            b->next = blocks;
            blocks = b;
            pthread_mutex_unlock(&lock);
            qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
        }
    }
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
        if (qemu_plugin_insn_size(insn) != 4) continue;
        uint32_t word;
        memcpy(&word, qemu_plugin_insn_data(insn), sizeof(word)); /* aarch64: little-endian */
        if ((word & ~(0x7fu << 5)) != HINT_BASE) continue;
        const unsigned imm = (word >> 5) & 0x7f;
        if (imm < FIRST_MARK || imm >= FIRST_MARK + MARKS) continue;
        marker* m = malloc(sizeof(*m)); /* lives as long as the translation (never freed: tiny) */
        if (m == NULL) continue;
        m->after = n - i - 1;
        m->kind = imm - FIRST_MARK;
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, m);
    }
}

static void on_vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index) {
    (void)id;
    (void)vcpu_index;
    pthread_mutex_lock(&lock);
    ++vcpus;
    pthread_mutex_unlock(&lock);
}

static void on_exit(qemu_plugin_id_t id, void* userdata) {
    (void)id;
    (void)userdata;
    pthread_mutex_lock(&lock);
    FILE* f = fopen(out_path, "w");
    if (f == NULL) {
        qemu_plugin_outs("edgebnn insn_count: cannot write the output file\n");
    } else {
        fprintf(f, "{\"format\": \"edgebnn-insn-count/1\", \"target\": \"%s\", \"total\": %" PRIu64
                   ", \"vcpus\": %u, \"dropped\": %zu, \"events\": [",
                target, count, vcpus, dropped);
        for (size_t i = 0; i < n_events; ++i) {
            fprintf(f, "%s[%u, %" PRIu64 ", %u]", i ? ", " : "", events[i].kind, events[i].count,
                    events[i].vcpu);
        }
        fprintf(f, "]}\n");
        fclose(f);
    }
    FILE* hot = hot_path[0] != '\0' ? fopen(hot_path, "w") : NULL;
    for (const block* b = blocks; hot != NULL && b != NULL; b = b->next) {
        if (b->executions) fprintf(hot, "%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", b->vaddr, b->insns, b->executions);
    }
    if (hot != NULL) fclose(hot);
    pthread_mutex_unlock(&lock);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc,
                                           char** argv) {
    if (info->system_emulation) {
        fprintf(stderr, "edgebnn insn_count: for qemu-user only\n");
        return 1;
    }
    snprintf(target, sizeof(target), "%s", info->target_name);
    snprintf(out_path, sizeof(out_path), "insn-count.json");
    for (int i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
        } else if (strncmp(argv[i], "hot=", 4) == 0) {
            snprintf(hot_path, sizeof(hot_path), "%s", argv[i] + 4);
        } else {
            fprintf(stderr, "edgebnn insn_count: unknown argument '%s' (out=FILE, hot=FILE)\n", argv[i]);
            return 1;
        }
    }
    events = calloc(MAX_EVENTS, sizeof(event));
    if (events == NULL) return 1;
    qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
