// Package verdict answers "is this flow allowed, and why?" for a set of manifests, by
// compiling them exactly as the agent does (agent/compile) and judging each flow with
// an Engine: the Go model of the datapath lookup (rules.Lookup), or the real eBPF
// program through BPF_PROG_TEST_RUN. It backs `strictgate verdict` and `strictgate
// explain`.
package verdict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/strictgate/strictgate/agent/compile"
)

// Manifests are the objects read from files, with the API server's defaults applied.
type Manifests struct {
	State compile.State
	// origin says where each object came from ("file:line"), for error messages.
	origin map[string]string
	// live: read from the API server (FromCluster), not from files.
	live bool
}

func (m *Manifests) source() string {
	if m.live {
		return "the cluster"
	}
	return "the manifests"
}

// Origin returns where the object of the given kind, namespace and name was read.
func (m *Manifests) Origin(kind, namespace, name string) string {
	return m.origin[kind+"/"+namespace+"/"+name]
}

// Load reads manifests from files and directories (recursively: *.yaml, *.yml, *.json).
// A file may hold several documents (YAML `---`, or concatenated JSON values) and
// `kind: List` objects. Kinds other than Namespace, Pod, NetworkPolicy, Service,
// EndpointSlice, Node and ClusterNetworkPolicy (v1beta1 or v1alpha2) are skipped and reported through warn (if not nil). Any malformed
// document is an error naming its file and line; nothing is returned then.
func Load(paths []string, warn func(string)) (*Manifests, error) {
	m := &Manifests{origin: map[string]string{}}
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read manifests: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				if !d.IsDir() {
					files = append(files, path)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read manifests in %s: %w", p, err)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no manifests (*.yaml, *.yml, *.json) in %s", strings.Join(paths, ", "))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read manifests: %w", err)
		}
		if err := m.addFile(f, data, warn); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// document is one raw object and the line it starts on.
type document struct {
	line int
	obj  any
}

func splitDocuments(name string, data []byte) ([]document, error) {
	var docs []document
	if strings.EqualFold(filepath.Ext(name), ".json") {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		for {
			off := int(dec.InputOffset())
			for off < len(data) && (data[off] == ' ' || data[off] == '\t' || data[off] == '\n' || data[off] == '\r') {
				off++
			}
			start := lineAt(data, off)
			var v any
			err := dec.Decode(&v)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var se *json.SyntaxError
				if errors.As(err, &se) {
					return nil, fmt.Errorf("%s:%d: bad JSON: %v", name, lineAt(data, int(se.Offset)), err)
				}
				return nil, fmt.Errorf("%s:%d: bad JSON: %v", name, start, err)
			}
			docs = append(docs, document{line: start, obj: v})
		}
		return docs, nil
	}
	// YAML 1.2 (go.yaml.in/yaml/v3): `namespace: y` is the string "y", not a boolean.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				return nil, fmt.Errorf("%s:%s: bad YAML: %s", name, m[1], m[2])
			}
			return nil, fmt.Errorf("%s: bad YAML: %v", name, err)
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s:%d: bad YAML: %v", name, n.Line, err)
		}
		if v == nil {
			continue // empty document
		}
		line := n.Line
		if len(n.Content) > 0 {
			line = n.Content[0].Line // the document node starts at its `---`
		}
		docs = append(docs, document{line: line, obj: v})
	}
	return docs, nil
}

// yamlLine picks the line out of the YAML decoder's messages ("yaml: line 5: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func lineAt(data []byte, off int) int {
	off = min(max(off, 0), len(data))
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

func (m *Manifests) addFile(name string, data []byte, warn func(string)) error {
	docs, err := splitDocuments(name, data)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := m.addObject(fmt.Sprintf("%s:%d", name, d.line), d.obj, warn); err != nil {
			return err
		}
	}
	return nil
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

func (m *Manifests) addObject(where string, obj any, warn func(string)) error {
	if _, ok := obj.(map[string]any); !ok {
		return fmt.Errorf("%s: not an object (a Kubernetes manifest is a mapping with apiVersion and kind)", where)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	var tm typeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return fmt.Errorf("%s: apiVersion/kind: %v", where, err)
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return fmt.Errorf("%s: object without apiVersion or kind", where)
	}
	if strings.HasSuffix(tm.Kind, "List") {
		items, ok := obj.(map[string]any)["items"].([]any)
		if !ok && obj.(map[string]any)["items"] != nil {
			return fmt.Errorf("%s: %s items must be a sequence", where, tm.Kind)
		}
		for i, it := range items {
			// Items of a typed list (PodList, as the API returns it) carry no kind.
			if im, ok := it.(map[string]any); ok && tm.Kind != "List" {
				if _, has := im["kind"]; !has {
					im["kind"] = strings.TrimSuffix(tm.Kind, "List")
				}
				if _, has := im["apiVersion"]; !has {
					im["apiVersion"] = tm.APIVersion
				}
			}
			if err := m.addObject(fmt.Sprintf("%s (items[%d])", where, i), it, warn); err != nil {
				return err
			}
		}
		return nil
	}
	var target any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		target = &corev1.Namespace{}
	case "v1 Pod":
		target = &corev1.Pod{}
	case "networking.k8s.io/v1 NetworkPolicy":
		target = &networkingv1.NetworkPolicy{}
	case "v1 Service":
		target = &corev1.Service{}
	case "discovery.k8s.io/v1 EndpointSlice":
		target = &discoveryv1.EndpointSlice{}
	case "v1 Node":
		target = &corev1.Node{}
	// v1alpha2 has v1beta1's schema (network-policy-api v0.3.0 serves both): read into
	// the one type the compiler takes.
	case "policy.networking.k8s.io/v1beta1 ClusterNetworkPolicy", "policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy":
		target = &cnpv1beta1.ClusterNetworkPolicy{}
	default:
		switch tm.Kind {
		case "ClusterNetworkPolicy":
			return fmt.Errorf("%s: %s %s: unsupported apiVersion (want policy.networking.k8s.io/v1beta1 or v1alpha2)", where, tm.Kind, tm.APIVersion)
		case "Namespace", "Pod", "NetworkPolicy", "Service", "EndpointSlice", "Node":
			return fmt.Errorf("%s: %s %s: unsupported apiVersion (want v1, networking.k8s.io/v1 or discovery.k8s.io/v1)", where, tm.Kind, tm.APIVersion)
		}
		if warn != nil {
			warn(fmt.Sprintf("%s: skipping %s %s (only Namespace, Pod, NetworkPolicy, Service, EndpointSlice, Node and ClusterNetworkPolicy matter)", where, tm.APIVersion, tm.Kind))
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // a typo such as `podSelecter` must not silently mean "all pods"
	if err := dec.Decode(target); err != nil {
		return fmt.Errorf("%s: %s: %v", where, tm.Kind, err)
	}
	meta := objectMeta(target)
	if meta.Name == "" {
		return fmt.Errorf("%s: %s without metadata.name", where, tm.Kind)
	}
	switch target.(type) {
	case *corev1.Namespace, *corev1.Node, *cnpv1beta1.ClusterNetworkPolicy: // cluster-scoped
		meta.Namespace = ""
	default:
		if meta.Namespace == "" {
			meta.Namespace = metav1.NamespaceDefault
		}
	}
	applyDefaults(target)
	if err := compile.Validate(target); err != nil {
		return fmt.Errorf("%s: %v", where, err)
	}
	key := tm.Kind + "/" + meta.Namespace + "/" + meta.Name
	if prev, dup := m.origin[key]; dup {
		return fmt.Errorf("%s: %s %s defined twice (first at %s)", where, tm.Kind, nsName(meta), prev)
	}
	m.origin[key] = where
	switch o := target.(type) {
	case *corev1.Namespace:
		m.State.Namespaces = append(m.State.Namespaces, o)
	case *corev1.Pod:
		m.State.Pods = append(m.State.Pods, o)
	case *networkingv1.NetworkPolicy:
		m.State.Policies = append(m.State.Policies, o)
	case *corev1.Service:
		m.State.Services = append(m.State.Services, o)
	case *discoveryv1.EndpointSlice:
		m.State.EndpointSlices = append(m.State.EndpointSlices, o)
	case *corev1.Node:
		m.State.Nodes = append(m.State.Nodes, o)
	case *cnpv1beta1.ClusterNetworkPolicy:
		m.State.ClusterNetworkPolicies = append(m.State.ClusterNetworkPolicies, o)
	}
	return nil
}

func nsName(meta *metav1.ObjectMeta) string {
	if meta.Namespace == "" {
		return meta.Name
	}
	return meta.Namespace + "/" + meta.Name
}

func objectMeta(obj any) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return &o.ObjectMeta
	case *corev1.Pod:
		return &o.ObjectMeta
	case *networkingv1.NetworkPolicy:
		return &o.ObjectMeta
	case *corev1.Service:
		return &o.ObjectMeta
	case *discoveryv1.EndpointSlice:
		return &o.ObjectMeta
	case *corev1.Node:
		return &o.ObjectMeta
	case *cnpv1beta1.ClusterNetworkPolicy:
		return &o.ObjectMeta
	}
	panic(fmt.Sprintf("objectMeta of %T", obj))
}

// applyDefaults does what the API server's defaulting would have done to the object.
func applyDefaults(obj any) {
	tcp := corev1.ProtocolTCP
	switch o := obj.(type) {
	case *corev1.Namespace:
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels[compile.NamespaceNameLabel] = o.Name
	case *corev1.Pod:
		for _, cs := range [][]corev1.Container{o.Spec.Containers, o.Spec.InitContainers} {
			for i := range cs {
				for j := range cs[i].Ports {
					if cs[i].Ports[j].Protocol == "" {
						cs[i].Ports[j].Protocol = tcp
					}
				}
			}
		}
		if o.Status.PodIP != "" && len(o.Status.PodIPs) == 0 {
			o.Status.PodIPs = []corev1.PodIP{{IP: o.Status.PodIP}}
		}
		if o.Status.PodIP == "" && len(o.Status.PodIPs) > 0 {
			o.Status.PodIP = o.Status.PodIPs[0].IP
		}
	case *networkingv1.NetworkPolicy:
		o.Spec.PolicyTypes = slices.Clone(compile.PolicyTypes(&o.Spec))
		for i := range o.Spec.Ingress {
			defaultPorts(o.Spec.Ingress[i].Ports)
		}
		for i := range o.Spec.Egress {
			defaultPorts(o.Spec.Egress[i].Ports)
		}
	case *corev1.Service:
		for i := range o.Spec.Ports {
			p := &o.Spec.Ports[i]
			if p.Protocol == "" {
				p.Protocol = tcp
			}
			if (p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == 0) || (p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == "") {
				p.TargetPort = intstr.FromInt32(p.Port)
			}
		}
		if o.Spec.ClusterIP != "" && len(o.Spec.ClusterIPs) == 0 {
			o.Spec.ClusterIPs = []string{o.Spec.ClusterIP}
		}
	case *discoveryv1.EndpointSlice:
		for i := range o.Ports {
			if o.Ports[i].Protocol == nil {
				o.Ports[i].Protocol = &tcp
			}
		}
	}
}

func defaultPorts(ports []networkingv1.NetworkPolicyPort) {
	for i := range ports {
		if ports[i].Protocol == nil {
			tcp := corev1.ProtocolTCP
			ports[i].Protocol = &tcp
		}
	}
}
