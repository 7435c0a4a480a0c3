package datapath

// The eBPF object and its Go bindings are generated from bpf/tc_pod.c and committed;
// `make generate` reproduces them byte for byte (bpf2go maps source paths in the debug
// info and strips DWARF). Only little-endian (amd64, arm64) is built.
//
// -mcpu=v3 for atomic OR/AND on conntrack flags. The multiarch include directories
// supply <asm/types.h> for <linux/types.h>; only the one of the build machine exists.
//go:generate go tool bpf2go -cc clang -target bpfel -output-stem tcpod -type sg_pod -type sg_pod_dir -type sg_lpm_key -type sg_lpm_val -type sg_port_rule -type sg_ct_key -type sg_ct_val -type sg_frag_key -type sg_frag_val -type sg_addr -type sg_config -type sg_bucket -type sg_counter -type sg_event -type sg_test_result -type sg_dir -type sg_state -type sg_verdict -type sg_reason -type sg_event_mode -type sg_attach -type sg_stat -type sg_size -type sg_skb_ctx bpf ../../bpf/tc_pod.c -- -O2 -g -Wall -Werror -mcpu=v3 -I../../bpf/include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu

// String methods of the datapath's own enums; the spellings are the constants' line
// comments (the shared enums are generated in internal/contract).
//go:generate go tool stringer -linecomment -type Reason,EventMode,AttachMode -output enums_string.go
