// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The real node: the host checks, containerd and its configuration, the test images, and the
// kubelet up to node Ready.

package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
)

// Paths the runtime or the kubelet write whatever folders they are given: shim sockets under
// /run/containerd/s, the socket cAdvisor looks for, device-plugin sockets, container log links,
// and libmount's utab.
var fixedHostPaths = []string{
	"/run/containerd",
	"/var/lib/kubelet",
	"/var/log/containers",
	"/run/mount",
}

// cadvisorSocket is the only place the kubelet's built-in cAdvisor looks for containerd; a link
// to the real socket gives /metrics/cadvisor its pod and container labels.
const cadvisorSocket = "/run/containerd/containerd.sock"

func (c *Cluster) containerdDir() string      { return filepath.Join(c.opts.VarDir, "containerd") }
func (c *Cluster) containerdStateDir() string { return filepath.Join(c.opts.RunDir, "containerd") }

// ContainerdSocket is the CRI and containerd API socket of the node.
func (c *Cluster) ContainerdSocket() string {
	return filepath.Join(c.containerdStateDir(), "containerd.sock")
}
func (c *Cluster) kubeletDir() string      { return filepath.Join(c.opts.VarDir, "kubelet") }
func (c *Cluster) podLogsDir() string      { return filepath.Join(c.opts.VarDir, "pod-logs") }
func (c *Cluster) volumePluginDir() string { return filepath.Join(c.opts.VarDir, "volume-plugins") }

// configDir holds the node's generated configuration: containerd's, the CNI network, the kubelet's.
func (c *Cluster) configDir() string { return filepath.Join(c.opts.VarDir, "config") }

// checkNodeHost fails early, before anything starts, when the host cannot run the node.
func checkNodeHost() error {
	if os.Geteuid() != 0 {
		return errors.New("a node needs root (cgroups, mounts, sysctls)")
	}
	for _, tool := range []string{"runc", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed: run hack/cluster/install-deps.sh", tool)
		}
	}
	if !exists("/usr/lib/cni/loopback") {
		return errors.New("CNI plugins are not installed: run hack/cluster/install-deps.sh")
	}
	return nil
}

func (c *Cluster) startNode(ctx context.Context) error {
	if err := c.recordHostChanges(); err != nil {
		return err
	}
	// Open to every user, as a node's kubepods cgroup is (the kubelet and systemd make their
	// cgroups 0755): the agent reads its containers' OOM counters as a non-root user.
	if err := createCgroup(c.opts.CgroupRoot, 0o755); err != nil {
		return err
	}
	if err := c.startContainerd(ctx); err != nil {
		return err
	}
	if err := c.importImages(ctx); err != nil {
		return err
	}
	return c.startKubelet(ctx)
}

// recordHostChanges notes, before anything touches them, the sysctl values and which fixed host
// paths already exist, so that teardown restores exactly what was there.
func (c *Cluster) recordHostChanges() error {
	if c.state.Sysctls == nil {
		vals, err := readSysctls()
		if err != nil {
			return err
		}
		c.state.Sysctls = vals
	}
	for _, p := range fixedHostPaths {
		if !exists(p) && !slices.Contains(c.state.CreatedPaths, p) {
			c.state.CreatedPaths = append(c.state.CreatedPaths, p)
		}
	}
	return c.saveState()
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	if c.running("containerd") {
		return nil
	}
	cniDir := filepath.Join(c.configDir(), "cni")
	if err := mkdirs(cniDir, c.containerdDir(), c.containerdStateDir()); err != nil {
		return err
	}
	// Pods here use the host network; a loopback-only network is enough for the runtime to
	// report NetworkReady.
	if err := os.WriteFile(filepath.Join(cniDir, "10-loopback.conflist"), []byte(
		`{"cniVersion":"1.0.0","name":"oomwatch-loopback","plugins":[{"type":"loopback"}]}`+"\n"), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version = 4
root = %[1]q
state = %[2]q
# Plugins that would write outside the folders above, or that nothing here uses.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp"]

[plugins."io.containerd.server.v1.grpc"]
  address = %[3]q

[plugins."io.containerd.server.v1.ttrpc"]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[5]q

[plugins."io.containerd.cri.v1.runtime"]
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start (runc cannot
  # lower its own oom_score_adj).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[6]q
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      # The sandbox image is imported from a local archive; there is nothing to pull.
      disable_pause_image_pull = true
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %[7]q
        Root = %[8]q
        SystemdCgroup = false
`, c.containerdDir(), c.containerdStateDir(), c.ContainerdSocket(),
		filepath.Join(c.containerdStateDir(), "containerd.sock.ttrpc"),
		testworkload.PauseImage, cniDir, lookPath("runc"), filepath.Join(c.opts.RunDir, "runc"))
	cfgPath := filepath.Join(c.configDir(), "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	c.logf("starting containerd")
	// The shim is found on PATH, next to containerd.
	env := []string{"PATH=" + filepath.Join(c.opts.Dir, "bin") + ":" + os.Getenv("PATH")}
	if _, err := c.spawn("containerd", c.Bin("containerd"), []string{"--config", cfgPath, "--log-level", "warn"}, env); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd", "ctr version to answer", func(ctx context.Context) bool {
		return c.ctr(ctx, "version") == nil
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cadvisorSocket), 0o750); err != nil {
		return err
	}
	_ = os.Remove(cadvisorSocket)
	return os.Symlink(c.ContainerdSocket(), cadvisorSocket)
}

// ctr runs ctr against the node's containerd in the CRI namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, c.Bin("ctr"), append( //nolint:gosec // the cluster's own ctr, arguments built here
		[]string{"--address", c.ContainerdSocket(), "--namespace", "k8s.io"}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, b)
	}
	return nil
}

// importImages builds the test images from this module and imports them into the node.
func (c *Cluster) importImages(ctx context.Context) error {
	began := time.Now()
	archives, err := testworkload.BuildImages(ctx, c.opts.ModuleDir, filepath.Join(c.opts.Dir, "images"))
	if err != nil {
		return err
	}
	for _, a := range archives {
		if err := c.ImportImage(ctx, a.Path); err != nil {
			return err
		}
	}
	c.logf("test images built and imported in %s", time.Since(began).Round(10*time.Millisecond))
	return nil
}

// ImportImage imports an image tarball (docker save format or OCI layout) into the node's
// containerd, where the kubelet sees it.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	return c.ctr(ctx, "images", "import", "--platform", "linux/amd64", archive)
}

func (c *Cluster) startKubelet(ctx context.Context) error {
	if c.running("kubelet") {
		return c.waitNodeReady(ctx)
	}
	pk := c.pki.path
	if err := mkdirs(c.configDir(), c.kubeletDir(), c.podLogsDir(), c.volumePluginDir()); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 10s}
  x509: {clientCAFile: %q}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 5s}
tlsCertFile: %q
tlsPrivateKeyFile: %q
containerRuntimeEndpoint: unix://%s
# This host has cgroup v1, which 1.37 refuses unless told otherwise; the kubelet's cgroups go
# under their own root, made beforehand in every hierarchy.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %q
# Leave the host firewall alone.
makeIPTablesUtilChains: false
# The kubelet then sets a few kernel sysctls; teardown restores them.
protectKernelDefaults: false
failSwapOn: false
podLogsDir: %q
volumePluginDir: %q
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# The imported test images cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
nodeStatusUpdateFrequency: 10s
`, c.opts.KubeletPort, c.opts.KubeletHealthz, pk(caName+".crt"), pk(kubeletServerName+".crt"), pk(kubeletServerName+".key"),
		c.ContainerdSocket(), c.opts.CgroupRoot, c.podLogsDir(), c.volumePluginDir())
	cfgPath := filepath.Join(c.configDir(), "kubelet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	c.logf("starting kubelet as node %s", c.opts.NodeName)
	if _, err := c.spawn("kubelet", c.Bin("kubelet"), []string{
		"--config=" + cfgPath,
		"--kubeconfig=" + c.kubeconfigPath("kubelet"),
		"--root-dir=" + c.kubeletDir(),
		"--cert-dir=" + filepath.Join(c.opts.VarDir, "kubelet-pki"),
		"--hostname-override=" + c.opts.NodeName,
		"--v=1",
	}, c.opts.ExtraKubeletEnv); err != nil {
		return err
	}
	return c.waitNodeReady(ctx)
}

func (c *Cluster) waitNodeReady(ctx context.Context) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "kubelet", "node "+c.opts.NodeName+" Ready", func(ctx context.Context) bool {
		node, err := cs.CoreV1().Nodes().Get(ctx, c.opts.NodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	})
}

func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}
