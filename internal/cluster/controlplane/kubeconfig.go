// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The kubeconfigs of the cluster's users and components, a service account's kubeconfig for
// processes that act as it, and the admin clients.

package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminKubeconfig is the path of a kubeconfig with cluster-admin rights (group system:masters).
func (c *Cluster) AdminKubeconfig() string {
	return filepath.Join(c.opts.Dir, "kubeconfig", "admin.kubeconfig")
}

// RESTConfig is an admin client configuration.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig())
}

// Client is an admin clientset.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (c *Cluster) adminHTTPClient() (*http.Client, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 2 * time.Second
	return rest.HTTPClientFor(cfg)
}

func (c *Cluster) writeKubeconfigs() error {
	for _, kc := range []struct{ file, user string }{
		{"admin.kubeconfig", adminName},
		{"kubelet.kubeconfig", kubeletClientName},
		{controllerManagerName + ".kubeconfig", controllerManagerName},
		{schedulerName + ".kubeconfig", schedulerName},
	} {
		content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: oomwatch
  cluster:
    server: %s
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
`, c.APIServerURL(), c.CAFile(), kc.user, c.pki.path(kc.user+".crt"), c.pki.path(kc.user+".key"), kc.user)
		if err := os.WriteFile(filepath.Join(c.opts.Dir, "kubeconfig", kc.file), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ServiceAccountKubeconfig mints a bound token of the service account namespace/name, valid for
// lifetime, and writes a kubeconfig at path that holds it and trusts the cluster CA. A process
// that uses it has exactly what the account is granted, as a pod running under it would.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name, path string, lifetime time.Duration) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	seconds := int64(lifetime / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	ca, err := filepath.Abs(c.CAFile())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	return clientcmd.WriteToFile(tokenKubeconfig(c.APIServerURL(), ca, name, tr.Status.Token), path)
}

func tokenKubeconfig(server, caFile, user, token string) clientcmdapi.Config {
	const cluster = "oomwatch-local"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[user] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	cfg.CurrentContext = user
	return *cfg
}
