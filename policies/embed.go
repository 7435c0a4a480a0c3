// Package policies holds strictgate's built-in NetworkPolicy hygiene rules, written in
// Rego (v1 syntax), each beside its _test.rego. The webhook compiles them together
// with the user's rules (webhook/hygiene); README.md documents the input document.
package policies

import "embed"

// FS holds every built-in module: the engine (engine.rego), the helper library
// (lib.rego) and one file per rule, with their tests (*_test.rego).
//
//go:embed *.rego
var FS embed.FS
