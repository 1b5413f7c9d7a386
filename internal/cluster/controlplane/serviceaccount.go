// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

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
