package contract

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ConditionType is the default pod readiness gate and condition the agent sets once a
// pod's policy is in the kernel; the webhook (or the MutatingAdmissionPolicy) injects
// the gate and the gate guard lets only the agent of the pod's node set it. Which types
// are used is configurable (gate.conditionTypes, --condition-types) so that a cluster
// can adopt an upstream name (KEP-5709) as one value; this one is the default.
const ConditionType = "strictgate.dev/policy-programmed"

// DefaultConditionTypes returns the condition types used when none are configured.
func DefaultConditionTypes() []string { return []string{ConditionType} }

// kubeletConditions are pod condition types the kubelet or the scheduler own. Gating a
// pod on one of them would make the agent and the kubelet overwrite each other's
// status, so they are refused as strictgate condition types.
var kubeletConditions = []string{"PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "DisruptionTarget", "PodResizePending", "PodResizeInProgress"}

// ValidateConditionTypes checks a configured list of condition types: at least one,
// each a name the API server accepts as a readiness gate's conditionType (a qualified
// name, like label keys), none owned by the kubelet, no duplicates. The error names
// every offending entry.
func ValidateConditionTypes(types []string) error {
	if len(types) == 0 {
		return errors.New("condition types: at least one is required (default " + ConditionType + ")")
	}
	var errs []error
	for i, t := range types {
		if msgs := validation.IsQualifiedName(t); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("condition type %q is not a valid condition type: %s", t, strings.Join(msgs, "; ")))
			continue
		}
		if slices.Contains(kubeletConditions, t) {
			errs = append(errs, fmt.Errorf("condition type %q is owned by the kubelet; use a name of your own (such as %s)", t, ConditionType))
			continue
		}
		if slices.Index(types, t) < i {
			errs = append(errs, fmt.Errorf("condition type %q is listed twice", t))
		}
	}
	return errors.Join(errs...)
}

// ConditionTypesFlag is the flag.Value of --condition-types: comma-separated and
// repeatable; the first use replaces the default. Every use checks the whole list with
// ValidateConditionTypes, so a bad or duplicate name fails flag parsing. The webhook and
// the agent bind the same flag so that they read the chart's one value the same way.
type ConditionTypesFlag struct {
	Dst *[]string
	set bool
}

// NewConditionTypesFlag returns a ConditionTypesFlag writing to dst.
func NewConditionTypesFlag(dst *[]string) *ConditionTypesFlag { return &ConditionTypesFlag{Dst: dst} }

// String implements flag.Value.
func (f *ConditionTypesFlag) String() string {
	if f == nil || f.Dst == nil {
		return ""
	}
	return strings.Join(*f.Dst, ",")
}

// Set implements flag.Value.
func (f *ConditionTypesFlag) Set(v string) error {
	next := []string{}
	if f.set {
		next = append(next, *f.Dst...)
	}
	for _, part := range strings.Split(v, ",") {
		next = append(next, strings.TrimSpace(part))
	}
	if err := ValidateConditionTypes(next); err != nil {
		return err
	}
	*f.Dst, f.set = next, true
	return nil
}

// ConditionTypesUsage is the help text of --condition-types.
const ConditionTypesUsage = "pod condition types used as strictgate's readiness gates, comma-separated (repeatable; replaces the default " + ConditionType + "); every one is set with the same guarantees"

// Reasons of the condition.
const (
	// ReasonProgrammed: the pod's compiled policy is in the kernel (status True).
	ReasonProgrammed = "PolicyProgrammed"
	// ReasonProgrammingFailed: the datapath refused the rules (status False).
	ReasonProgrammingFailed = "ProgrammingFailed"
	// ReasonInterfaceNotFound: the pod's host-side interface is missing (status False).
	ReasonInterfaceNotFound = "InterfaceNotFound"
	// ReasonKernelMismatch: what the kernel holds differs from what was computed (status False).
	ReasonKernelMismatch = "KernelMismatch"
	// ReasonWaitingForDefaultDeny: the pod's namespace is enforced but its generated
	// default-deny policy has not reached the agent yet, so the pod stays unprogrammed
	// (status False).
	ReasonWaitingForDefaultDeny = "WaitingForDefaultDeny"
)
