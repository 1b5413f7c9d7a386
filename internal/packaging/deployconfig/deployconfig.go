// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package deployconfig gives the collector configurations that deploy/ ships, taken from the
// ConfigMaps that kustomize generates, so that a test runs exactly what a cluster gets.
//
// The configurations read their environment: the agent's is described at the top of
// deploy/config.yaml, the gateway's at the top of deploy/gateway/config.yaml. To run a gateway
// replica as a process on this host, give it POD_IP (a loopback address of its own, e.g.
// 127.0.0.2: it listens there on :4317 for OTLP, :13133 for the health check and :8888 for its own
// metrics), PROMETHEUS_REMOTE_WRITE_URL and LOGS_OTLP_ENDPOINT, and either TLS_CERT_FILE,
// TLS_KEY_FILE and TLS_CLIENT_CA_FILE with Gateway, or nothing more with GatewayPlaintext.
package deployconfig

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/oomwatch/oomwatch/deploy"
	"github.com/oomwatch/oomwatch/internal/packaging/kustomize"
)

// Agent is config.yaml of the ConfigMap that deploy/ generates for the DaemonSet.
func Agent() (string, error) { return generated(".", "oomwatch-agent", "config.yaml") }

// Gateway is config.yaml of the ConfigMap that deploy/gateway generates for the Deployment.
func Gateway() (string, error) { return generated("gateway", "oomwatch-gateway", "config.yaml") }

// GatewayPrometheusOTLP is what deploy/gateway/components/prometheus-otlp adds to the gateway's
// ConfigMap: prometheus-otlp.yaml, which the collector merges over Gateway (or
// GatewayPlaintext). It reads PROMETHEUS_OTLP_URL instead of PROMETHEUS_REMOTE_WRITE_URL.
func GatewayPrometheusOTLP() (string, error) {
	manifest, err := kustomize.BuildOverlay(deploy.Manifests, "deploy", `resources: [../deploy/gateway]
components: [../deploy/gateway/components/prometheus-otlp]
`)
	if err != nil {
		return "", err
	}
	return configMapFile(manifest, "gateway/components/prometheus-otlp", "oomwatch-gateway", "prometheus-otlp.yaml")
}

// GatewayPlaintext is Gateway with the OTLP receiver's tls section removed, everything else as
// shipped: a gateway on this host that agents reach in plaintext (OTLP_INSECURE=true and no
// OTLP_CA_FILE), e.g. in a test that has no certificates.
func GatewayPlaintext() (string, error) {
	cfg, err := Gateway()
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(cfg), &doc); err != nil {
		return "", err
	}
	grpc, ok := lookup(doc, "receivers", "otlp", "protocols", "grpc").(map[string]any)
	if !ok || grpc["tls"] == nil {
		return "", errors.New("deploy/gateway/config.yaml: no receivers.otlp.protocols.grpc.tls")
	}
	delete(grpc, "tls")
	out, err := yaml.Marshal(doc)
	return string(out), err
}

func lookup(doc map[string]any, path ...string) any {
	var v any = doc
	for _, key := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[key]
	}
	return v
}

// generated builds dir of deploy/ and returns file of its ConfigMap name-<hash>.
func generated(dir, name, file string) (string, error) {
	manifest, err := kustomize.BuildFS(deploy.Manifests, dir)
	if err != nil {
		return "", err
	}
	return configMapFile(manifest, dir, name, file)
}

// configMapFile returns file of the ConfigMap name-<hash> of a built manifest; dir names what was
// built, in the error.
func configMapFile(manifest []byte, dir, name, file string) (string, error) {
	for _, doc := range strings.Split(string(manifest), "\n---\n") {
		var cm corev1.ConfigMap
		if err := utilyaml.Unmarshal([]byte(doc), &cm); err != nil {
			return "", err
		}
		if cm.Kind == "ConfigMap" && strings.HasPrefix(cm.Name, name+"-") {
			if cfg, ok := cm.Data[file]; ok {
				return cfg, nil
			}
		}
	}
	return "", fmt.Errorf("deploy/%s: no ConfigMap %s-<hash> with %s", dir, name, file)
}
