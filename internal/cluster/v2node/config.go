// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The guest node's configuration, written to the share it mounts at /v2node: its client
// certificate, kubeconfig, containerd's and the kubelet's configuration, the CNI network and the
// node script.

package v2node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/oomwatch/oomwatch/internal/cluster/controlplane"
	"github.com/oomwatch/oomwatch/internal/cluster/testworkload"
)

func (n *Node) writeConfig(c *controlplane.Cluster, images []string) error {
	share := n.shareDir()
	// Paths in the guest: the share is at shareMount, the host's root at its own paths.
	g := func(name string) string { return filepath.Join(shareMount, name) }
	ca, err := os.ReadFile(c.CAFile())
	if err != nil {
		return err
	}
	files := map[string]string{"ca.crt": string(ca)}

	files["kubelet.kubeconfig"] = fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: oomwatch
  cluster:
    server: https://%s:%d
    # The API server's certificate does not name the forwarded address.
    tls-server-name: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: oomwatch
  context: {cluster: oomwatch, user: %s}
current-context: oomwatch
`, guestAPIAddress, guestAPIPort, apiServerName, g("ca.crt"), n.opts.NodeName, g("kubelet.crt"), g("kubelet.key"), n.opts.NodeName)

	// Debian's runc, from the host's root like every other binary of the guest.
	runc, err := exec.LookPath("runc")
	if err != nil {
		return errors.New("runc is not installed: run hack/cluster/install-deps.sh")
	}
	files["cni/10-loopback.conflist"] = `{"cniVersion":"1.0.0","name":"oomwatch-loopback","plugins":[{"type":"loopback"}]}` + "\n"

	files["containerd.toml"] = fmt.Sprintf(`version = 4
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp"]

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[1]q

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[2]q
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      disable_pause_image_pull = true
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %[3]q
        SystemdCgroup = false
`, testworkload.PauseImage, g("cni"), runc)

	// failCgroupV1 keeps its default (true): this node is cgroup v2.
	extra := ""
	if n.opts.SingleProcessOOMKill {
		extra = "# An OOM kills one process of a container: memory.oom.group stays 0.\nsingleProcessOOMKill: true\n"
	}
	// The kubelet evicts pods when less than this is left of the node's memory, and of the
	// pods' allocatable memory: with systemReserved, a leaker reaches the kubepods limit, and
	// the eviction manager, reading stats of a moment before, would evict another pod as well.
	evictionMemory := "100Mi"
	if n.opts.SystemReservedMemory != "" {
		extra += fmt.Sprintf("# The pods' memory, the kubepods cgroup's limit, is what is left.\nsystemReserved: {memory: %q}\n", n.opts.SystemReservedMemory)
		evictionMemory = "1Mi"
	}
	files["kubelet.yaml"] = fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 10s}
  x509: {clientCAFile: %q}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 5s}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
makeIPTablesUtilChains: false
protectKernelDefaults: false
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: %q, nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
nodeStatusUpdateFrequency: 10s
# Under TCG the runtime answers slowly.
runtimeRequestTimeout: 5m
%s`, g("ca.crt"), evictionMemory, extra)

	files["node.sh"] = fmt.Sprintf(nodeScript, filepath.Join(c.Options().Dir, "bin"), shellWords(images), n.opts.NodeName)

	for name, content := range files {
		p := filepath.Join(share, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return err
		}
	}
	if err := c.WriteNodeClientCert(share, "kubelet", n.opts.NodeName); err != nil {
		return fmt.Errorf("the node's client certificate: %w", err)
	}
	return nil
}
