// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package controlplane starts and stops the project's local Kubernetes cluster on this machine:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1, and optionally a
// real node (containerd with Debian's runc, and a kubelet) on which the kernel really OOM-kills
// containers, plus a kubelet-less node whose pod statuses tests write themselves.
//
// Everything it does to the host (processes, cgroups, mounts, sysctls, paths outside its own
// folders) is recorded in a state file before it is done, and Teardown undoes it from that file
// and from the fixed names below, so teardown works from another process, after a crash, and
// twice in a row.
package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Options says where the cluster lives and what it runs. The zero value, after Defaults, is the
// cluster that `make cluster-up` starts.
type Options struct {
	// Dir holds the binaries (bin/), image archives (images/), certificates (pki/, kept across
	// runs), kubeconfigs and logs. Default: <module root>/_build/cluster.
	Dir string
	// VarDir and RunDir hold the runtime data (etcd, containerd, kubelet) and the sockets and
	// state file; both are removed at teardown. Defaults: /var/lib/oomwatch-cluster and /run/oomwatch-cluster.
	VarDir string
	RunDir string
	// ModuleDir is the module the test images are built from. Default: found from the working dir.
	ModuleDir string

	// Node starts containerd and a kubelet (root only). Without it only the control plane runs.
	Node bool
	// NodeName is the real node; StandinNodeName the kubelet-less one ("" skips it).
	NodeName        string
	StandinNodeName string
	// CgroupRoot is the kubelet's cgroupRoot; the cluster's own processes go in CgroupRoot+".system".
	CgroupRoot string

	EtcdPort              int
	EtcdPeerPort          int
	APIServerPort         int
	ControllerManagerPort int
	SchedulerPort         int
	KubeletPort           int
	KubeletHealthz        int
	StandinKubelet        int // kubelet port the kubelet-less node advertises (for a stand-in server)
	ReadyTimeout          time.Duration
	ExtraAPIArgs          []string
	ExtraKubeletEnv       []string

	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Defaults fills every zero field.
func (o Options) Defaults() (Options, error) {
	if o.ModuleDir == "" {
		dir, err := findModuleRoot()
		if err != nil {
			return o, err
		}
		o.ModuleDir = dir
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(o.ModuleDir, "_build", "cluster")
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	def(&o.VarDir, "/var/lib/oomwatch-cluster")
	def(&o.RunDir, "/run/oomwatch-cluster")
	def(&o.NodeName, "oomwatch-node")
	def(&o.CgroupRoot, "/oomwatch")
	defInt(&o.EtcdPort, 32379)
	defInt(&o.EtcdPeerPort, 32380)
	defInt(&o.APIServerPort, 36443)
	defInt(&o.ControllerManagerPort, 10257)
	defInt(&o.SchedulerPort, 10259)
	defInt(&o.KubeletPort, 10250)
	defInt(&o.KubeletHealthz, 10248)
	defInt(&o.StandinKubelet, 10255)
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o, nil
}

// state is what teardown needs to undo; it is written before each host change.
type state struct {
	Procs map[string]proc `json:"procs"`
	// Sysctls holds the values from before the kubelet first ran; never overwritten until restored.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// CreatedPaths are paths outside Dir, VarDir and RunDir that did not exist before start.
	CreatedPaths []string `json:"created_paths,omitempty"`
}

// Cluster is a started cluster.
type Cluster struct {
	opts  Options
	state state
	pki   pki
}

// Open returns the cluster described by opts and its state file, whether it runs or not.
func Open(opts Options) (*Cluster, error) {
	o, err := opts.Defaults()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: o, pki: pki{dir: filepath.Join(o.Dir, "pki")}, state: state{Procs: map[string]proc{}}}
	b, err := os.ReadFile(c.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &c.state); err != nil {
			return nil, fmt.Errorf("state file %s: %w", c.statePath(), err)
		}
		if c.state.Procs == nil {
			c.state.Procs = map[string]proc{}
		}
	}
	return c, nil
}

// Options returns the options with defaults filled in.
func (c *Cluster) Options() Options { return c.opts }

// statePath lives in RunDir, a tmpfs: it goes away with a reboot, like the processes, mounts,
// cgroups and sysctl values it records, and a `make clean` does not lose it.
func (c *Cluster) statePath() string    { return filepath.Join(c.opts.RunDir, "state.json") }
func (c *Cluster) systemCgroup() string { return c.opts.CgroupRoot + ".system" }
func (c *Cluster) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.opts.Log, ">> "+format+"\n", args...)
}

func (c *Cluster) saveState() error {
	b, err := json.MarshalIndent(c.state, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.opts.RunDir, 0o750); err != nil {
		return err
	}
	tmp := c.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath())
}

// Bin returns the path of a cluster binary.
func (c *Cluster) Bin(name string) string { return filepath.Join(c.opts.Dir, "bin", name) }

// Start starts the cluster (a no-op for the parts already running) and waits until it is ready:
// the API server answers /readyz, the controllers /healthz, the system namespaces have their
// service accounts and, with a node, the node is Ready.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := Open(opts)
	if err != nil {
		return nil, err
	}
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have started or stopped parts since Open read the state.
	if c, err = Open(opts); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	began := time.Now()
	bins := []string{"etcd", "kube-apiserver", controllerManager, scheduler}
	if c.opts.Node {
		bins = append(bins, "containerd", "containerd-shim-runc-v2", "ctr", "kubelet")
	}
	for _, b := range bins {
		if !exists(c.Bin(b)) {
			return fmt.Errorf("%s is missing: run `make cluster-bin`", c.Bin(b))
		}
	}
	if c.opts.Node {
		if err := checkNodeHost(); err != nil {
			return err
		}
	}
	if err := mkdirs(c.opts.Dir, c.opts.VarDir, c.opts.RunDir); err != nil {
		return err
	}
	if err := c.pki.ensure(c.opts.NodeName, c.opts.StandinNodeName, hostIPs()); err != nil {
		return err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return err
	}
	if err := createCgroup(c.systemCgroup(), 0o750); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return err
	}
	if err := c.startControllers(ctx); err != nil {
		return err
	}
	c.logf("control plane ready after %s", time.Since(began).Round(10*time.Millisecond))
	if c.opts.StandinNodeName != "" {
		if err := c.startStandin(ctx); err != nil {
			return err
		}
	}
	// The controller-manager takes a few seconds to set its controllers up: the node starts
	// meanwhile, and the system namespaces are waited for last.
	if c.opts.Node {
		nodeBegan := time.Now()
		if err := c.startNode(ctx); err != nil {
			return err
		}
		c.logf("node %s Ready after %s (%s since start)", c.opts.NodeName,
			time.Since(nodeBegan).Round(10*time.Millisecond), time.Since(began).Round(10*time.Millisecond))
	}
	for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem} {
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	c.logf("default service accounts in place after %s", time.Since(began).Round(10*time.Millisecond))
	return nil
}

// mkdirs makes each folder and its parents.
func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	return nil
}

// hostIPs are the machine's non-loopback IPv4 addresses; the kubelet registers one of them.
func hostIPs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			out = append(out, n.IP)
		}
	}
	return out
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isMainModule(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the oomwatch module root above the working directory")
		}
		dir = parent
	}
}

func isMainModule(gomod []byte) bool {
	for _, l := range strings.Split(string(gomod), "\n") {
		if strings.TrimSpace(l) == "module github.com/oomwatch/oomwatch" {
			return true
		}
	}
	return false
}
