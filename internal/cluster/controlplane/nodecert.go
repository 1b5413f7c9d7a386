// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package controlplane

import "crypto/x509"

// WriteNodeClientCert writes dir/<base>.crt and dir/<base>.key: the client certificate, signed
// by the cluster's CA, of the kubelet of another node named node (system:node:<node> in
// system:nodes, as the Node authorizer and NodeRestriction want).
func (c *Cluster) WriteNodeClientCert(dir, base, node string) error {
	ca, caKey, err := loadPair(c.pki.path(caName+".crt"), c.pki.path(caName+".key"))
	if err != nil {
		return err
	}
	return pki{dir: dir}.writeLeaf(leaf{
		name: base, cn: "system:node:" + node, orgs: []string{"system:nodes"},
		ext: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
}
