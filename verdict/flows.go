package verdict

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/strictgate/strictgate/agent/rules"
)

// Flow is one line of the flows input: a connection's first packet.
type Flow struct {
	// Src and Dst are "namespace/pod" or an IP address.
	Src string `json:"src"`
	// Dst may also be "namespace/service:port" (port by number or name): the Service's
	// ClusterIP on that port, judged as traffic to its ready backends.
	Dst string `json:"dst"`
	// Port is the destination port; ignored for ICMP; may be left out when Dst names a
	// Service port.
	Port int `json:"port"`
	// Protocol is TCP (default), UDP, SCTP or ICMP.
	Protocol string `json:"protocol,omitempty"`
}

// proto returns the flow's protocol number.
func (f *Flow) proto() (rules.Protocol, error) {
	switch strings.ToUpper(f.Protocol) {
	case "", "TCP":
		return rules.ProtocolTCP, nil
	case "UDP":
		return rules.ProtocolUDP, nil
	case "SCTP":
		return rules.ProtocolSCTP, nil
	case "ICMP":
		return rules.ProtocolICMP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: want TCP, UDP, SCTP or ICMP", f.Protocol)
}

// check validates a flow's fields (not whether its ends exist).
func (f *Flow) check() error {
	if f.Src == "" || f.Dst == "" {
		return fmt.Errorf(`a flow needs "src" and "dst" ("namespace/pod" or an IP)`)
	}
	p, err := f.proto()
	if err != nil {
		return err
	}
	if p == rules.ProtocolICMP {
		return nil // ICMP has no port; one given is ignored
	}
	if _, isSvc := parseServiceRef(f.Dst); isSvc && f.Port == 0 {
		return nil // the Service's port
	}
	if f.Port < 1 || f.Port > 65535 {
		return fmt.Errorf(`"port" must be 1-65535 for %s (got %d)`, p, f.Port)
	}
	return nil
}

// ReadFlows reads JSON-lines flows; blank lines and lines starting with # are skipped.
// Errors name the input and line; on error no flow is returned.
func ReadFlows(name string, r io.Reader) ([]Flow, error) {
	var flows []Flow
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		var f Flow
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("%s:%d: bad flow: %v", name, line, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s:%d: bad flow: more than one JSON value on the line", name, line)
		}
		if err := f.check(); err != nil {
			return nil, fmt.Errorf("%s:%d: bad flow: %v", name, line, err)
		}
		flows = append(flows, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read flows from %s: %w", name, err)
	}
	return flows, nil
}
