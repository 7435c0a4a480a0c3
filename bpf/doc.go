// Package bpf holds the C sources of strictgate's eBPF programs (tc_pod.c) and the
// headers shared with Go (include/). bpf2go compiles them from agent/datapath, and the
// enums and limits Go components share are generated from the object's BTF into
// internal/contract (`make generate`). See README.md for the design.
package bpf
