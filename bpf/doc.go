// Package bpf holds the C sources of strictgate's eBPF programs (tc_pod.c) and the
// headers shared with Go (include/). They are compiled by bpf2go from agent/datapath
// (`make generate`); this Go package only carries tests that keep the C limits and the
// Go contract in agent/rules in step. See README.md for the design.
package bpf
