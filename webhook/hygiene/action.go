package hygiene

import (
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Action is what the webhook does with a rule's finding.
type Action string

const (
	// Deny refuses the request with the finding's message.
	Deny Action = "deny"
	// Warn admits the request and returns the message as an admission warning,
	// which kubectl and client-go print.
	Warn Action = "warn"
	// DryRun admits the request silently; the finding is only logged and counted,
	// so a new rule can be watched in production before it is enforced.
	DryRun Action = "dryrun"
)

// strength orders actions: deny > warn > dryrun.
func (a Action) strength() int {
	switch a {
	case Deny:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// Cap is a, weakened to at most ceiling ("" = no ceiling): Deny capped at Warn warns,
// anything capped at DryRun only logs.
func (a Action) Cap(ceiling Action) Action {
	if ceiling != "" && a.strength() > ceiling.strength() {
		return ceiling
	}
	return a
}

// ParseAction accepts deny, warn and dryrun (case-insensitive; "dry-run" too).
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "deny":
		return Deny, nil
	case "warn":
		return Warn, nil
	case "dryrun", "dry-run":
		return DryRun, nil
	}
	return "", fmt.Errorf("unknown action %q: want deny, warn or dryrun", s)
}

// Actions overrides rule actions by rule id. A key is either a full id
// ("SG007-unmatched-selector") or its prefix up to the first dash ("SG007").
type Actions map[string]Action

// ParseActions reads "SG001=warn,SG007-unmatched-selector=deny" (the flag form).
func ParseActions(s string) (Actions, error) {
	out := Actions{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, act, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(id) == "" {
			return nil, fmt.Errorf("rule action %q: want <rule-id>=<deny|warn|dryrun>", part)
		}
		a, err := ParseAction(act)
		if err != nil {
			return nil, fmt.Errorf("rule action %q: %w", part, err)
		}
		out[strings.TrimSpace(id)] = a
	}
	return out, nil
}

// ParseActionsFile reads a YAML or JSON map of rule id to action, the format of the
// actions.yaml file in the custom rules directory:
//
//	SG007: deny
//	SG009-no-dns-egress: dryrun
func ParseActionsFile(data []byte) (Actions, error) {
	raw := map[string]string{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse actions: want a map of rule id to deny|warn|dryrun: %w", err)
	}
	out := Actions{}
	for id, act := range raw {
		a, err := ParseAction(act)
		if err != nil {
			return nil, fmt.Errorf("parse actions: rule %s: %w", id, err)
		}
		out[id] = a
	}
	return out, nil
}

// String renders the flag form, sorted by rule id.
func (a Actions) String() string {
	parts := make([]string, 0, len(a))
	for id, act := range a {
		parts = append(parts, id+"="+string(act))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// lookup finds the override for id: an exact key first, then the id's prefix.
func (a Actions) lookup(id string) (Action, bool) {
	if act, ok := a[id]; ok {
		return act, true
	}
	if short, _, ok := strings.Cut(id, "-"); ok {
		if act, ok := a[short]; ok {
			return act, true
		}
	}
	return "", false
}

// merge returns a copy of a with b's entries on top.
func (a Actions) merge(b Actions) Actions {
	out := make(Actions, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
