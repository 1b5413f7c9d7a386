// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package scraper

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/scraper/scraperhelper"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/apiclient"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/kubelet"
	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/metadata"
)

// The receiver's configuration, its defaults and its validation: the receiver's package names
// these types for its users.

const (
	defaultCollectionInterval     = 10 * time.Second
	defaultKubeletTimeout         = 5 * time.Second
	defaultMaxPendingTerminations = 64
)

// Config of the k8s_container receiver.
type Config struct {
	scraperhelper.ControllerConfig `mapstructure:",squash"`
	metadata.MetricsBuilderConfig  `mapstructure:",squash"`
	// Events switches the log records of the logs signal, one per OOM kill.
	Events metadata.EventsConfig `mapstructure:"events"`

	// AuthType of the API server connection: serviceAccount, kubeConfig or none.
	AuthType string `mapstructure:"auth_type"`
	// Context of the kubeconfig, for auth_type kubeConfig; empty means its current context.
	Context string `mapstructure:"context"`
	// Node scopes the pod watch to pods on this node (DaemonSet mode); empty watches the
	// whole cluster.
	Node string `mapstructure:"node"`
	// ClusterName is the k8s.cluster.name resource attribute of everything the receiver emits,
	// so that signals of several clusters in one backend stay apart; empty sets none.
	ClusterName string `mapstructure:"cluster_name"`
	// Kubelet is where container stats come from.
	Kubelet KubeletConfig `mapstructure:"kubelet"`
	// Extract names pod labels and annotations to add as resource attributes.
	Extract ExtractConfig `mapstructure:"extract"`
	// MaxPendingTerminations bounds the points one container can queue between two scrapes;
	// beyond it the oldest are dropped and counted.
	MaxPendingTerminations int `mapstructure:"max_pending_terminations"`
	// ProcessOOMKills says where the counts of processes OOM-killed inside living containers
	// come from.
	ProcessOOMKills ProcessOOMKillsConfig `mapstructure:"process_oom_kills"`
	// Storage is the ID of a storage extension in which the receiver keeps its horizon, when
	// it last looked: after a restart, an OOM kill that ended after that is news, not history.
	Storage *component.ID `mapstructure:"storage"`
	// PodEvents writes a Kubernetes Event (reason OOMKill) on the pod for each OOM kill the
	// receiver reports, with its explanation in one line; it needs the right to create events.
	PodEvents bool `mapstructure:"pod_events"`
	// KernelLog reads the kernel's reports of OOM kills, for the victim of each kill.
	KernelLog KernelLogConfig `mapstructure:"kernel_log"`
}

// KernelLogConfig is the reader of the kernel's OOM-kill reports.
type KernelLogConfig struct {
	// Enabled reads them; the collector then needs to read Path (CAP_SYSLOG, unless the node's
	// kernel.dmesg_restrict is 0) and must run on the node the receiver watches.
	Enabled bool `mapstructure:"enabled"`
	// Path is the kernel's log device: /dev/kmsg, or where it is mounted.
	Path string `mapstructure:"path"`
}

// KubeletConfig is the connection to the node's kubelet Summary API.
type KubeletConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// Endpoint is host:port or a URL; empty means the node's address and kubelet port from
	// the Node object.
	Endpoint string `mapstructure:"endpoint"`
	// AuthType: serviceAccount, tls, kubeConfig or none.
	AuthType           string        `mapstructure:"auth_type"`
	CAFile             string        `mapstructure:"ca_file"`
	CertFile           string        `mapstructure:"cert_file"`
	KeyFile            string        `mapstructure:"key_file"`
	InsecureSkipVerify bool          `mapstructure:"insecure_skip_verify"`
	Timeout            time.Duration `mapstructure:"timeout"`
}

// Sources of the process OOM kill counts.
const (
	// ProcessSourceKubelet reads the kubelet's /metrics/cadvisor container_oom_events_total,
	// which counts the kernel's OOM reports and misses those the kernel's log rate limit hides.
	ProcessSourceKubelet = "kubelet"
	// ProcessSourceCgroup reads the kernel's own per-cgroup count (oom_kill) through a
	// read-only mount of the host's cgroup filesystem: exact, at the cost of that mount.
	ProcessSourceCgroup = "cgroup"
)

// ProcessOOMKillsConfig is where process OOM kill counts come from.
type ProcessOOMKillsConfig struct {
	// Source is kubelet or cgroup.
	Source string `mapstructure:"source"`
	// CgroupRoot is where the host's cgroup filesystem is mounted, for source cgroup.
	CgroupRoot string `mapstructure:"cgroup_root"`
}

// ExtractConfig names pod metadata to copy onto the resource.
type ExtractConfig struct {
	Labels      []FieldExtract `mapstructure:"labels"`
	Annotations []FieldExtract `mapstructure:"annotations"`
}

// FieldExtract copies one label or annotation.
type FieldExtract struct {
	Key string `mapstructure:"key"`
	// TagName is the resource attribute; empty means k8s.pod.label.<key> or
	// k8s.pod.annotation.<key>.
	TagName string `mapstructure:"tag_name"`
}

// NewDefaultConfig returns the receiver's defaults.
func NewDefaultConfig() *Config {
	controller := scraperhelper.NewDefaultControllerConfig()
	controller.CollectionInterval = defaultCollectionInterval
	return &Config{
		ControllerConfig:     controller,
		MetricsBuilderConfig: metadata.NewDefaultMetricsBuilderConfig(),
		AuthType:             apiclient.AuthServiceAccount,
		Kubelet: KubeletConfig{
			Enabled:  true,
			AuthType: kubelet.AuthServiceAccount,
			Timeout:  defaultKubeletTimeout,
		},
		Events:                 metadata.DefaultEventsConfig(),
		ProcessOOMKills:        ProcessOOMKillsConfig{Source: ProcessSourceKubelet},
		KernelLog:              KernelLogConfig{Path: "/dev/kmsg"},
		MaxPendingTerminations: defaultMaxPendingTerminations,
	}
}

var _ confmap.Validator = (*Config)(nil)

// Validate checks the settings and names the field and the value it refuses.
func (cfg *Config) Validate() error {
	var errs []error
	if !slices.Contains([]string{apiclient.AuthServiceAccount, apiclient.AuthKubeConfig, apiclient.AuthNone}, cfg.AuthType) {
		errs = append(errs, fmt.Errorf("auth_type must be serviceAccount, kubeConfig or none (got %q)", cfg.AuthType))
	}
	if cfg.Context != "" && cfg.AuthType != apiclient.AuthKubeConfig && cfg.Kubelet.AuthType != kubelet.AuthKubeConfig {
		errs = append(errs, fmt.Errorf("context is used only with auth_type kubeConfig (got context %q with auth_type %q)", cfg.Context, cfg.AuthType))
	}
	if cfg.CollectionInterval <= 0 {
		errs = append(errs, fmt.Errorf("collection_interval must be positive (got %s)", cfg.CollectionInterval))
	}
	if cfg.KernelLog.Enabled && cfg.Node == "" {
		errs = append(errs, errors.New("kernel_log.enabled reads the kernel log of one node: it needs node (got \"\")"))
	}
	if cfg.KernelLog.Enabled && cfg.KernelLog.Path == "" {
		errs = append(errs, errors.New("kernel_log.enabled needs kernel_log.path (got \"\")"))
	}
	if cfg.MaxPendingTerminations <= 0 {
		errs = append(errs, fmt.Errorf("max_pending_terminations must be positive (got %d)", cfg.MaxPendingTerminations))
	}
	if cfg.Kubelet.Enabled {
		errs = append(errs, cfg.Kubelet.validate(cfg.Node)...)
	}
	errs = append(errs, cfg.ProcessOOMKills.validate(cfg.Node)...)
	errs = append(errs, validateExtract("extract.labels", cfg.Extract.Labels)...)
	errs = append(errs, validateExtract("extract.annotations", cfg.Extract.Annotations)...)
	errs = append(errs, cfg.Extract.validateTagNames()...)
	return errors.Join(errs...)
}

func (k *KubeletConfig) validate(node string) []error {
	var errs []error
	if node == "" {
		errs = append(errs, errors.New("kubelet.enabled needs node, the node whose kubelet to scrape (got node \"\"): set node: ${env:K8S_NODE_NAME} or kubelet.enabled: false"))
	}
	if !slices.Contains([]string{kubelet.AuthServiceAccount, kubelet.AuthTLS, kubelet.AuthKubeConfig, kubelet.AuthNone}, k.AuthType) {
		errs = append(errs, fmt.Errorf("kubelet.auth_type must be serviceAccount, tls, kubeConfig or none (got %q)", k.AuthType))
	}
	if k.AuthType == kubelet.AuthTLS && (k.CertFile == "" || k.KeyFile == "") {
		errs = append(errs, fmt.Errorf("kubelet.auth_type tls needs kubelet.cert_file and kubelet.key_file (got %q and %q)", k.CertFile, k.KeyFile))
	}
	if k.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("kubelet.timeout must be positive (got %s)", k.Timeout))
	}
	if k.Endpoint != "" {
		if err := validateEndpoint(k.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("kubelet.endpoint %q: %w", k.Endpoint, err))
		}
	}
	return errs
}

func (p *ProcessOOMKillsConfig) validate(node string) []error {
	switch p.Source {
	case ProcessSourceKubelet:
		if p.CgroupRoot != "" {
			return []error{fmt.Errorf("process_oom_kills.cgroup_root is used only with process_oom_kills.source cgroup (got %q with source %q)", p.CgroupRoot, p.Source)}
		}
	case ProcessSourceCgroup:
		var errs []error
		if p.CgroupRoot == "" {
			errs = append(errs, errors.New("process_oom_kills.source cgroup needs process_oom_kills.cgroup_root, where the host's /sys/fs/cgroup is mounted read-only (got \"\")"))
		}
		if node == "" {
			errs = append(errs, errors.New("process_oom_kills.source cgroup reads the cgroups of one node: it needs node (got \"\")"))
		}
		return errs
	default:
		return []error{fmt.Errorf("process_oom_kills.source must be kubelet or cgroup (got %q)", p.Source)}
	}
	return nil
}

func validateEndpoint(endpoint string) error {
	raw := endpoint
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("scheme must be https or http (got %q)", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

func validateExtract(field string, fields []FieldExtract) []error {
	var errs []error
	seen := map[string]bool{}
	for i, f := range fields {
		if f.Key == "" {
			errs = append(errs, fmt.Errorf("%s[%d].key must be set (got \"\")", field, i))
			continue
		}
		if seen[f.Key] {
			errs = append(errs, fmt.Errorf("%s[%d].key %q is named twice", field, i, f.Key))
		}
		seen[f.Key] = true
	}
	return errs
}

// builtinAttributes are the resource attributes the receiver sets itself; an extracted label or
// annotation must not overwrite them, least of all the ones that identify a container.
var builtinAttributes = []string{
	"container.id", "k8s.container.name", "k8s.namespace.name", "k8s.node.name", "k8s.pod.name", "k8s.pod.uid",
	"k8s.replicaset.name", "k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name", "k8s.job.name", "k8s.cronjob.name",
}

// validateTagNames refuses an extracted attribute that would overwrite a built-in one or
// another extracted one.
func (e ExtractConfig) validateTagNames() []error {
	var errs []error
	owner := map[string]string{}
	check := func(field string, fields []FieldExtract, prefix string) {
		for i, f := range fields {
			if f.Key == "" {
				continue
			}
			name := f.attribute(prefix)
			here := fmt.Sprintf("%s[%d]", field, i)
			if slices.Contains(builtinAttributes, name) {
				errs = append(errs, fmt.Errorf("%s.tag_name %q is an attribute the receiver sets itself: choose another name", here, name))
				continue
			}
			if prev, dup := owner[name]; dup {
				errs = append(errs, fmt.Errorf("%s.tag_name %q is already the tag_name of %s", here, name, prev))
				continue
			}
			owner[name] = here
		}
	}
	check("extract.labels", e.Labels, "k8s.pod.label.")
	check("extract.annotations", e.Annotations, "k8s.pod.annotation.")
	return errs
}

// labelKeys and annotationKeys are what the informer transform keeps.
func (e ExtractConfig) labelKeys() []string      { return keys(e.Labels) }
func (e ExtractConfig) annotationKeys() []string { return keys(e.Annotations) }

func keys(fields []FieldExtract) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.Key
	}
	return out
}

func (f FieldExtract) attribute(prefix string) string {
	if f.TagName != "" {
		return f.TagName
	}
	return prefix + f.Key
}
