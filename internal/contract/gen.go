package contract

// The datapath's vocabulary comes from the C headers through the BTF of the object
// bpf2go builds in agent/datapath (its go:generate runs first: `go generate ./...` walks
// packages in import-path order), so a changed header changes these constants and
// `make generate-check` fails until they are committed. Names and String() spellings:
// internal/tools/btfenum and stringer -linecomment.
//go:generate go run ../tools/btfenum -object ../../agent/datapath/tcpod_bpfel.o -source bpf/include/strictgate.h -package contract -out datapath_gen.go -enum sg_dir:Direction:uint8:SG_DIR_: -enum sg_state:State:uint8:SG_STATE_:State -enum sg_verdict:Verdict:uint8:SG_VERDICT_:Verdict -enum sg_rule:RuleID:uint32:SG_RULE_:Rule
//go:generate go run ../tools/btfenum -object ../../agent/datapath/tcpod_bpfel.o -source bpf/include/limits.h -package contract -out limits_gen.go -enum sg_limit::int:SG_:
//go:generate go tool stringer -linecomment -type Direction,State,Verdict -output datapath_string.go
