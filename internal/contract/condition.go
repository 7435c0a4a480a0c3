package contract

// ConditionType is the pod readiness gate and condition the agent sets once a pod's
// policy is in the kernel; the webhook injects the gate and the gate guard lets only the
// agent of the pod's node set it.
const ConditionType = "strictgate.dev/policy-programmed"

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
