package contract

// Names and labels of the NetworkPolicies strictgate generates in every enforced
// namespace. The webhook's default-deny controller writes them, its NetworkPolicy
// validator protects them (rule SG011) and the agent waits for the default deny before
// a pod's first programming.
const (
	// DefaultDenyPolicy selects every pod for Ingress and Egress with no rules.
	DefaultDenyPolicy = "strictgate-default-deny"
	// AllowDNSPolicy allows egress to the cluster DNS beside DefaultDenyPolicy.
	AllowDNSPolicy = "strictgate-allow-dns"
	// ManagedByLabel with value ManagedBy marks generated objects; the controller
	// deletes only objects that carry it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "strictgate"
)

// GeneratedPolicies are the names of every generated NetworkPolicy.
func GeneratedPolicies() []string { return []string{DefaultDenyPolicy, AllowDNSPolicy} }
