package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/controlplane"
)

const standinNode = "oomwatch-standin"

// env is the cluster every test of the package shares; nil when the tests are not enabled.
var env *suite

type suite struct {
	cluster  *controlplane.Cluster
	admin    kubernetes.Interface
	realNode string
	// kubeconfig holds a token of deploy/'s agent service account: the collector runs with
	// exactly the permissions that ship.
	kubeconfig string
	collector  string
	dir        string
}

func TestMain(m *testing.M) {
	if os.Getenv("OOMWATCH_E2E") != "1" {
		os.Exit(m.Run())
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: a real node needs root")
		os.Exit(1)
	}
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts := controlplane.Options{Node: true, StandinNodeName: standinNode, Log: prefixed("cluster: ")}
	defer func() {
		if err := controlplane.Teardown(context.Background(), opts); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: teardown:", err)
		}
	}()
	s, err := setUp(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: set-up:", err)
		return 1
	}
	env = s
	return m.Run()
}

func setUp(ctx context.Context, opts controlplane.Options) (*suite, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return nil, err
	}
	s := &suite{collector: filepath.Join(root, "_build", "otelcol-oomwatch", "otelcol-oomwatch")}
	if _, err := os.Stat(s.collector); err != nil {
		return nil, fmt.Errorf("the collector is not built (make collector): %w", err)
	}
	if s.dir, err = os.MkdirTemp("", "oomwatch-e2e-"); err != nil {
		return nil, err
	}
	if s.cluster, err = controlplane.Start(ctx, opts); err != nil {
		return nil, err
	}
	s.realNode = s.cluster.Options().NodeName
	if s.admin, err = s.cluster.Client(); err != nil {
		return nil, err
	}
	// Everything deploy/ ships is accepted by the API server; the DaemonSet stays without pods
	// (no controller-manager runs), so the tests run the collector themselves with its identity.
	for _, f := range []string{"namespace.yaml", "rbac.yaml", "agent-config.yaml", "daemonset.yaml"} {
		manifest, err := deploy.Manifests.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := s.cluster.Apply(ctx, manifest); err != nil {
			return nil, fmt.Errorf("applying deploy/%s: %w", f, err)
		}
	}
	if s.kubeconfig, err = s.agentKubeconfig(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// agentKubeconfig writes a kubeconfig with a bound token of deploy/'s service account.
func (s *suite) agentKubeconfig(ctx context.Context) (string, error) {
	expiry := int64(3600)
	tr, err := s.admin.CoreV1().ServiceAccounts("oomwatch").CreateToken(ctx, "oomwatch-agent", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for oomwatch-agent: %w", err)
	}
	ca, err := os.ReadFile(s.cluster.CAFile())
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: s.cluster.APIServerURL(), CertificateAuthorityData: ca}
	cfg.AuthInfos["oomwatch-agent"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["agent"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "oomwatch-agent"}
	cfg.CurrentContext = "agent"
	path := filepath.Join(s.dir, "agent.kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// need skips a test that has no cluster.
func need(t *testing.T) *suite {
	t.Helper()
	if env == nil {
		t.Skip("set OOMWATCH_E2E=1 and run as root (make e2e) to run against the local cluster")
	}
	return env
}

// freePort returns a loopback port nobody listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			_, _ = io.WriteString(p.w, p.prefix+line)
		}
	}
	return len(b), nil
}

func prefixed(prefix string) io.Writer { return prefixWriter{prefix: prefix, w: os.Stderr} }
