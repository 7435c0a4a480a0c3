package compile

import (
	"hash/fnv"
	"strconv"

	"github.com/strictgate/strictgate/agent/rules"
)

// maxRuleID is the largest ID the compiler hands out; IDs above it are reserved for
// the datapath's special verdicts (rules.RuleUnisolated and friends) and future ones.
const maxRuleID = 0xffffff00

// ruleTable maps RuleIDs to the rules they name and back.
type ruleTable struct {
	byID  map[rules.RuleID]RuleRef
	byRef map[RuleRef]rules.RuleID
}

func newRuleTable() ruleTable {
	return ruleTable{byID: map[rules.RuleID]RuleRef{}, byRef: map[RuleRef]rules.RuleID{}}
}

// hashRef is the preferred ID of a rule: stable across processes and restarts.
func hashRef(r RuleRef) rules.RuleID {
	h := fnv.New32a()
	h.Write([]byte(r.Policy.Namespace))
	h.Write([]byte{0})
	h.Write([]byte(r.Policy.Name))
	h.Write([]byte{0, byte(r.Direction), 0})
	h.Write([]byte(strconv.Itoa(r.Index)))
	if r.Tier != "" { // NetworkPolicy IDs stay what they were before tiers existed
		h.Write([]byte{0})
		h.Write([]byte(r.Tier + "\x00" + r.Name + "\x00" + r.Action))
	}
	return rules.RuleID(h.Sum32()%maxRuleID) + 1 // 1..maxRuleID: never RuleNone or reserved
}

func (t *ruleTable) assign(r RuleRef) rules.RuleID {
	if id, ok := t.byRef[r]; ok {
		return id
	}
	id := hashRef(r)
	for {
		if _, taken := t.byID[id]; !taken {
			break
		}
		id++
		if id > maxRuleID {
			id = 1
		}
	}
	t.byID[id] = r
	t.byRef[r] = id
	return id
}

func (t *ruleTable) release(r RuleRef) {
	if id, ok := t.byRef[r]; ok {
		delete(t.byRef, r)
		delete(t.byID, id)
	}
}
