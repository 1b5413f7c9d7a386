// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/testing/testlog"
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
	opts := controlplane.Options{Node: true, StandinNodeName: standinNode, Log: testlog.Prefixed("cluster: ")}
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
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		return nil, err
	}
	s := &suite{collector: filepath.Join(root, "_build", "otelcol-oomwatch", "otelcol-oomwatch")}
	// OOMWATCH_COLLECTOR runs another build of the distribution, e.g. one of an older commit,
	// against the same tests.
	if bin := os.Getenv("OOMWATCH_COLLECTOR"); bin != "" {
		s.collector = bin
	}
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
	// Everything deploy/ ships is accepted by the API server. The DaemonSet is only sent as a dry
	// run: as shipped it would run the agent on every node, the stand-in too. The tests run the
	// collector themselves with its identity; the one that runs the DaemonSet applies it itself.
	// The collectors of these tests read process kills from the kubelet's /metrics/cadvisor (the
	// receiver's default source), with the role components/kubelet-source adds for it.
	for _, f := range []string{"namespace.yaml", "rbac.yaml", "components/kubelet-source/rbac.yaml", "daemonset.yaml"} {
		manifest, err := deploy.Manifests.ReadFile(f)
		if err != nil {
			return nil, err
		}
		apply := s.cluster.Apply
		if f == "daemonset.yaml" {
			apply = s.cluster.ApplyDryRun
		}
		if err := apply(ctx, manifest); err != nil {
			return nil, fmt.Errorf("applying deploy/%s: %w", f, err)
		}
	}
	s.kubeconfig = filepath.Join(s.dir, "agent.kubeconfig")
	if err := s.cluster.ServiceAccountKubeconfig(ctx, "oomwatch", "oomwatch-agent", s.kubeconfig, time.Hour); err != nil {
		return nil, err
	}
	return s, nil
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
