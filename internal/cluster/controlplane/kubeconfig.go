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
func (c *Cluster) AdminKubeconfig() string { return c.kubeconfigPath("admin") }

// kubeconfigPath is the kubeconfig of one of the cluster's own users: admin, kubelet, or a
// controller by its pki name.
func (c *Cluster) kubeconfigPath(name string) string {
	return filepath.Join(c.opts.Dir, "kubeconfig", name+".kubeconfig")
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

// adminHTTPClient trusts the cluster CA and presents the admin certificate, for the health
// endpoints of the API server and the controllers.
func (c *Cluster) adminHTTPClient() (*http.Client, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 2 * time.Second
	return rest.HTTPClientFor(cfg)
}

// writeKubeconfigs writes the kubeconfig of each user the cluster's pki holds a client
// certificate for.
func (c *Cluster) writeKubeconfigs() error {
	for _, kc := range []struct{ name, user string }{
		{"admin", adminName},
		{"kubelet", kubeletClientName},
		{controllerManagerName, controllerManagerName},
		{schedulerName, schedulerName},
	} {
		if err := c.writeKubeconfig(c.kubeconfigPath(kc.name), kc.user, &clientcmdapi.AuthInfo{
			ClientCertificate: c.pki.path(kc.user + ".crt"),
			ClientKey:         c.pki.path(kc.user + ".key"),
		}); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfig writes a kubeconfig at path that reaches the API server, trusts the cluster CA
// and authenticates as user with auth: a client certificate, or a service account's token.
func (c *Cluster) writeKubeconfig(path, user string, auth *clientcmdapi.AuthInfo) error {
	const cluster = "oomwatch"
	ca, err := filepath.Abs(c.CAFile())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: c.APIServerURL(), CertificateAuthority: ca}
	cfg.AuthInfos[user] = auth
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	cfg.CurrentContext = cluster
	return clientcmd.WriteToFile(*cfg, path)
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
	return c.writeKubeconfig(path, name, &clientcmdapi.AuthInfo{Token: tr.Status.Token})
}
