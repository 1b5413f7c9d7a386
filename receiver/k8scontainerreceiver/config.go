// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package k8scontainerreceiver

import "github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/scraper"

// The receiver's configuration, as its users name it. The types live with the scraper that
// reads them, in internal/scraper, where Validate and the defaults are.

// Config of the k8s_container receiver.
type Config = scraper.Config

// KubeletConfig is the connection to the node's kubelet Summary API.
type KubeletConfig = scraper.KubeletConfig

// ProcessOOMKillsConfig is where process OOM kill counts come from.
type ProcessOOMKillsConfig = scraper.ProcessOOMKillsConfig

// ExtractConfig names pod metadata to copy onto the resource.
type ExtractConfig = scraper.ExtractConfig

// FieldExtract copies one label or annotation.
type FieldExtract = scraper.FieldExtract

// Sources of the process OOM kill counts.
const (
	// ProcessSourceKubelet reads the kubelet's /metrics/cadvisor container_oom_events_total.
	ProcessSourceKubelet = scraper.ProcessSourceKubelet
	// ProcessSourceCgroup reads the kernel's own per-cgroup count through a read-only mount of
	// the host's cgroup filesystem.
	ProcessSourceCgroup = scraper.ProcessSourceCgroup
)
