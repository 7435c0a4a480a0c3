package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestWrite(t *testing.T) {
	en := &btf.Enum{Name: "sg_state", Size: 4, Values: []btf.EnumValue{
		{Name: "SG_STATE_UNPROGRAMMED_DENY", Value: 0},
		{Name: "SG_STATE_ISOLATED", Value: 2},
		{Name: "SG_STATE_MAX", Value: 3},
	}}
	rules := &btf.Enum{Name: "sg_rule", Size: 4, Values: []btf.EnumValue{
		{Name: "SG_RULE_UNISOLATED", Value: 0xffffffffffffffff}, // sign-extended in BTF
	}}
	limits := &btf.Enum{Name: "sg_limit", Size: 4, Values: []btf.EnumValue{{Name: "SG_MAX_PODS", Value: 1024}}}
	for _, tc := range []struct {
		spec string
		en   *btf.Enum
		want []string
	}{
		{"sg_state:State:uint8:SG_STATE_:State", en, []string{
			"type State uint8",
			"StateUnprogrammedDeny State = 0 // unprogrammed-deny",
			"StateIsolated State = 2 // isolated",
			"const NumStates = 3",
		}},
		{"sg_rule:RuleID:uint32:SG_RULE_:Rule", rules, []string{"RuleUnisolated RuleID = 0xffffffff // unisolated"}},
		{"sg_limit::int:SG_:", limits, []string{"MaxPods = 1024"}},
	} {
		e, err := parseSpec(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := write(&b, e, tc.en, "x.h"); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.spec, w, b.String())
			}
		}
	}
}

func TestWriteRefusesForeignMember(t *testing.T) {
	e, _ := parseSpec("sg_dir:Direction:uint8:SG_DIR_:")
	en := &btf.Enum{Name: "sg_dir", Size: 4, Values: []btf.EnumValue{{Name: "SG_DIRECTION_IN"}}}
	if err := write(&bytes.Buffer{}, e, en, ""); err == nil || !strings.Contains(err.Error(), "lacks prefix") {
		t.Fatalf("write = %v, want a prefix error", err)
	}
	for _, bad := range []string{"sg_dir", "sg_dir:Direction::SG_DIR_:", "a:b:c:d:e:f"} {
		if _, err := parseSpec(bad); err == nil {
			t.Errorf("parseSpec(%q) accepted", bad)
		}
	}
}
