package verdict

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strictgate/strictgate/agent/rules"
)

// serviceRef is a flow end naming a Service: "namespace/service:port", the port by
// number or name. Pod names cannot hold a colon, so the form is unambiguous.
type serviceRef struct {
	svc  types.NamespacedName
	port string
}

func parseServiceRef(s string) (serviceRef, bool) {
	if _, err := netip.ParseAddr(s); err == nil {
		return serviceRef{}, false
	}
	ns, rest, ok := strings.Cut(s, "/")
	if !ok {
		return serviceRef{}, false
	}
	name, port, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || port == "" {
		return serviceRef{}, false
	}
	return serviceRef{svc: types.NamespacedName{Namespace: ns, Name: name}, port: port}, true
}

// servicePort finds the Service and its port named by ref for proto; it returns the
// ClusterIPs and the port number a client connects to.
func (e *Evaluator) servicePort(ref serviceRef, proto rules.Protocol) ([]netip.Addr, int, error) {
	svc, ok := e.services[ref.svc]
	if !ok {
		return nil, 0, fmt.Errorf("service %s not found", ref.svc)
	}
	var ips []netip.Addr
	for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if a, err := netip.ParseAddr(s); err == nil && !containsAddr(ips, a.Unmap()) {
			ips = append(ips, a.Unmap())
		}
	}
	if len(ips) == 0 {
		return nil, 0, fmt.Errorf("service %s has no ClusterIP (headless or ExternalName): name one of its pods instead", ref.svc)
	}
	num, numErr := strconv.Atoi(ref.port)
	var have []string
	for _, p := range svc.Spec.Ports {
		have = append(have, portDesc(p))
		if !strings.EqualFold(string(p.Protocol), proto.String()) && !(p.Protocol == "" && proto == rules.ProtocolTCP) {
			continue
		}
		if (numErr == nil && int(p.Port) == num) || (numErr != nil && p.Name == ref.port) {
			return ips, int(p.Port), nil
		}
	}
	return nil, 0, fmt.Errorf("service %s has no %s port %s (it has: %s)", ref.svc, proto, ref.port, strings.Join(have, ", "))
}

func portDesc(p corev1.ServicePort) string {
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	if p.Name != "" {
		return fmt.Sprintf("%d/%s (%s)", p.Port, proto, p.Name)
	}
	return fmt.Sprintf("%d/%s", p.Port, proto)
}

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func parseSelector(s string) (labels.Selector, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty label selector")
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("label selector %q: %v", s, err)
	}
	return sel, nil
}

func podLabels(p *corev1.Pod) labels.Set { return labels.Set(p.Labels) }

func joinMax(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(", … %d more", len(names)-n)
}
