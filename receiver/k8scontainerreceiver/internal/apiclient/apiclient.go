// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package apiclient builds the connection to the Kubernetes API server.
package apiclient

import (
	"errors"
	"fmt"
	"net"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Auth types of the API server connection.
const (
	AuthServiceAccount = "serviceAccount"
	AuthKubeConfig     = "kubeConfig"
	AuthNone           = "none"
)

const serviceAccountCA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

// userAgent names the receiver in API server audit logs and metrics.
const userAgent = "oomwatch-k8s-container-receiver"

// RestConfig returns the client configuration for authType: serviceAccount is the in-cluster
// configuration, kubeConfig follows client-go's loading rules (KUBECONFIG, then
// ~/.kube/config) with an optional context, none talks to the in-cluster address without
// credentials.
func RestConfig(authType, kubeContext string) (*rest.Config, error) {
	var cfg *rest.Config
	switch authType {
	case AuthServiceAccount:
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster configuration: %w", err)
		}
		cfg = c
	case AuthKubeConfig:
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig: %w", err)
		}
		cfg = c
	case AuthNone:
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("auth_type none needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT")
		}
		cfg = &rest.Config{Host: "https://" + net.JoinHostPort(host, port)}
		if _, err := os.Stat(serviceAccountCA); err == nil {
			cfg.CAFile = serviceAccountCA
		}
	default:
		return nil, fmt.Errorf("unknown auth type %q", authType)
	}
	cfg.UserAgent = userAgent
	return cfg, nil
}
