// Package contract is the vocabulary every strictgate component shares: the enforcement
// and event-log modes, the datapath's directions, states, verdicts, special rule ids and
// limits, the readiness condition and its reasons, the names and labels of generated
// objects, the namespace scope (which namespaces are enforced) and the datapath's pin
// layout. The webhook, the agent, the CNI plugin and the
// commands meet here instead of importing each other.
//
// It is pure: no kernel, no API client, no I/O. What mirrors the C headers in bpf/include
// is generated from them (gen.go), never kept by hand.
package contract
