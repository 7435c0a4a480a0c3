package webhookprobe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/strictgate/strictgate/certs"
	"github.com/strictgate/strictgate/test/controlplane"
)

// Namespaces the probe creates in the API server.
const (
	nsEnforced = "probe-enforced"
	nsOptedOut = "probe-optout"
	nsExcluded = "probe-excluded" // passed with --exclude-namespace
	nsOwn      = "strictgate"     // --namespace: never enforced
)

// proc is a running `strictgate webhook` process with its stderr captured.
type proc struct {
	base      string // https://127.0.0.1:port
	metrics   string // http://127.0.0.1:port
	probes    string // http://127.0.0.1:port
	certDir   string
	stderr    *syncBuffer
	secrets   []string // strings that must never appear in the process's output
	caPool    *x509.CertPool
	cmd       *exec.Cmd
	exited    chan struct{}
	exitErr   error // valid once exited is closed
	bundle    *certs.Bundle
	apiCfg    *rest.Config
	bin       string // the built strictgate binary
	volumeGen int    // generation of the Secret-volume layout in certDir
	kubecfg   string // kubeconfig file for the envtest admin
	clientMu  sync.Mutex
	client    *http.Client
}

// syncBuffer is an io.Writer the process writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeKubeconfig writes a kubeconfig for the envtest admin user from rc with
// client-go's clientcmd API; it returns the path and the credentials it contains (the
// process must never print them).
func writeKubeconfig(t *testing.T, rc *rest.Config, path string) []string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["probe"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData, Token: rc.BearerToken,
	}
	kc.Contexts["probe"] = &clientcmdapi.Context{Cluster: "probe", AuthInfo: "admin"}
	kc.CurrentContext = "probe"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
	var secrets []string
	if len(rc.KeyData) > 0 {
		secrets = append(secrets, pemBody(rc.KeyData))
	}
	if rc.BearerToken != "" {
		secrets = append(secrets, rc.BearerToken)
	}
	if len(secrets) == 0 {
		t.Fatal("envtest's admin user has neither a client key nor a token: nothing to authenticate with")
	}
	return secrets
}

// pemBody is a distinctive line from inside a PEM block: a leak of the key would show it
// whatever the framing.
func pemBody(p []byte) string {
	lines := strings.Split(strings.TrimSpace(string(p)), "\n")
	if len(lines) < 3 {
		return string(p)
	}
	return lines[1]
}

// startWebhook starts a control plane, writes certificates and a kubeconfig, and runs
// the real binary against them until the test ends.
func startWebhook(t *testing.T) *proc {
	t.Helper()
	dir := t.TempDir()
	binDone := make(chan string, 1)
	go func() { binDone <- buildBinaryNoFatal(dir) }()

	env := &envtest.Environment{}
	rc := controlplane.Start(t, env)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	for name, labels := range map[string]map[string]string{
		nsEnforced: nil,
		nsOptedOut: {"strictgate.dev/enforce": "disabled"},
		nsExcluded: nil,
		nsOwn:      nil,
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", name, err)
		}
	}

	p := &proc{
		certDir: filepath.Join(dir, "certs"),
		stderr:  &syncBuffer{},
		exited:  make(chan struct{}),
		apiCfg:  rc,
	}
	p.secrets = writeKubeconfig(t, rc, filepath.Join(dir, "kubeconfig"))
	p.bundle = p.writeCerts(t)

	bin := <-binDone
	if strings.HasPrefix(bin, "ERROR ") {
		t.Fatal(strings.TrimPrefix(bin, "ERROR "))
	}
	p.bin, p.kubecfg = bin, filepath.Join(dir, "kubeconfig")

	port, metricsPort, probePort := freePort(t), freePort(t), freePort(t)
	p.base = fmt.Sprintf("https://127.0.0.1:%d", port)
	p.metrics = fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	p.probes = fmt.Sprintf("http://127.0.0.1:%d", probePort)
	p.cmd = exec.Command(bin, "webhook",
		"--kubeconfig="+filepath.Join(dir, "kubeconfig"),
		"--namespace="+nsOwn,
		"--exclude-namespace="+nsExcluded,
		"--cert-dir="+p.certDir,
		"--host=127.0.0.1", fmt.Sprintf("--port=%d", port),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort),
		// Short lease timings: the process is stopped with SIGTERM at the end and
		// must not hold the test up.
		"--leader-lease-duration=4s", "--leader-renew-deadline=3s", "--leader-retry-period=1s",
	)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s webhook: %v", bin, err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t) })

	p.waitReady(t)
	return p
}

// buildBinaryNoFatal builds cmd/strictgate the way `make build` does, into dir; it
// runs beside the control plane's start-up, so it reports errors as a string.
func buildBinaryNoFatal(dir string) string {
	bin := filepath.Join(dir, "strictgate")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/strictgate")
	cmd.Dir = controlplane.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("ERROR go build ./cmd/strictgate: %v\n%s", err, out)
	}
	return bin
}

// writeCerts writes a fresh CA and serving certificate for 127.0.0.1 into the cert
// directory and makes the probe's clients trust only that CA.
func (p *proc) writeCerts(t *testing.T) *certs.Bundle {
	t.Helper()
	b, err := certs.Generate([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.installSecretVolume(t, b.Cert, b.Key, b.CACert)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CACert) {
		t.Fatal("CA certificate does not parse")
	}
	p.clientMu.Lock()
	p.caPool = pool
	p.client = &http.Client{
		// Every probe has a deadline: a hang is a failure, not a stuck test.
		Timeout: 15 * time.Second,
		// Redirects are answers in their own right here, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}},
	}
	p.clientMu.Unlock()
	p.secrets = append(p.secrets, pemBody(b.Key))
	return b
}

// installSecretVolume lays the files out exactly as the kubelet does for a mounted
// Secret, and updates them the way it does: the files are symlinks through "..data",
// a symlink to a timestamped directory, and an update writes a new directory and
// renames a new "..data" over the old one (one atomic swap of both files).
func (p *proc) installSecretVolume(t *testing.T, cert, key, ca []byte) {
	t.Helper()
	p.volumeGen++
	gen := fmt.Sprintf("..2026_11_22_%02d", p.volumeGen)
	genDir := filepath.Join(p.certDir, gen)
	if err := os.MkdirAll(genDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{certs.CertFile: cert, certs.KeyFile: key, certs.CAFile: ca} {
		if err := os.WriteFile(filepath.Join(genDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(p.certDir, "..data"))
	tmp := filepath.Join(p.certDir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(gen, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(p.certDir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{certs.CertFile, certs.KeyFile, certs.CAFile} {
		link := filepath.Join(p.certDir, name)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(p.certDir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *proc) httpClient() *http.Client {
	p.clientMu.Lock()
	defer p.clientMu.Unlock()
	return p.client
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	c := &http.Client{Timeout: 5 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("strictgate webhook exited before it became ready:\n%s", p.stderr.String())
		default:
		}
		resp, err := c.Get(p.probes + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not ready within 60s (last /readyz: %s); stderr:\n%s", last, p.stderr.String())
}

func (p *proc) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Errorf("strictgate webhook did not stop within 20s of SIGTERM; killing it")
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// post sends body to path on the admission server.
func (p *proc) post(t *testing.T, method, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	code, out, _ := p.postH(t, method, path, contentType, body)
	return code, out
}

// postH is post that also returns the answer's headers.
func (p *proc) postH(t *testing.T, method, path, contentType string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, p.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := p.httpClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read response: %v", method, path, err)
	}
	return resp.StatusCode, out, resp.Header
}

// admit posts an AdmissionReview as the API server does and decodes the answer.
func (p *proc) admit(t *testing.T, path string, review []byte) *admissionv1.AdmissionReview {
	t.Helper()
	return p.admitCT(t, path, "application/json", review)
}

// admitCT is admit with the given Content-Type.
func (p *proc) admitCT(t *testing.T, path, contentType string, review []byte) *admissionv1.AdmissionReview {
	t.Helper()
	code, body, h := p.postH(t, http.MethodPost, path, contentType, review)
	if code != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d: %s", path, code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("POST %s: answer has Content-Type %q, want application/json", path, ct)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("POST %s: answer is not an AdmissionReview: %v\n%s", path, err, body)
	}
	if out.Response == nil {
		t.Fatalf("POST %s: AdmissionReview without response: %s", path, body)
	}
	return &out
}

// cpuTime is the user+system CPU time the webhook process has used so far, from
// /proc/<pid>/stat (fields 14 and 15, in USER_HZ ticks, which Linux fixes at 100 for
// this interface).
func (p *proc) cpuTime(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the webhook's CPU time: %v", err)
	}
	// The command name (field 2) is parenthesised and may hold spaces: count from
	// after its closing parenthesis, where field 3 starts.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 13 {
		t.Fatalf("/proc/%d/stat: %d fields after the name: %q", p.cmd.Process.Pid, len(fields), b)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %v", p.cmd.Process.Pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100)
}
