// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// The certificate folder: the cluster CA, every serving and client certificate it signs, and
// the service-account signing key, made once and kept.

package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the certificate folder. Its files are made once and kept, so an API server restarted
// later, or a cluster started again, serves under the same CA and clients keep trusting it.
type pki struct{ dir string }

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

// CAFile is the cluster CA, which signs the API server's and the kubelet's serving certificates.
func (c *Cluster) CAFile() string { return c.pki.path(caName + ".crt") }

// CA, serving and client certificates of the cluster, and the service-account signing key.
const (
	caName            = "ca"
	apiServerName     = "apiserver"
	adminName         = "admin"
	apiKubeletClient  = "apiserver-kubelet-client"
	kubeletClientName = "kubelet-client"
	kubeletServerName = "kubelet-server"
	standinClientName = "standin-client"
	serviceAccountKey = "service-account"
	// The controller-manager and the scheduler each use one certificate as their client identity
	// towards the API server and to serve their own health and metrics endpoints on loopback.
	controllerManagerName = "controller-manager"
	schedulerName         = "scheduler"
)

type leaf struct {
	name string
	cn   string
	orgs []string
	dns  []string
	ips  []net.IP
	ext  []x509.ExtKeyUsage
}

// ensure creates every missing file. hostIPs go into the kubelet's serving certificate so that
// clients reaching it by the node address can verify it. standinName, when set, gets a node
// client certificate too: its Lease is renewed under that node's own identity.
func (p pki) ensure(nodeName, standinName string, hostIPs []net.IP) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := p.ensureCA()
	if err != nil {
		return err
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	leaves := []leaf{
		{
			name: apiServerName, cn: "kube-apiserver",
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: append(loopback, net.ParseIP(serviceClusterIP)),
			ext: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		},
		{name: adminName, cn: "oomwatch-admin", orgs: []string{"system:masters"}, ext: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{name: apiKubeletClient, cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, ext: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{name: kubeletClientName, cn: "system:node:" + nodeName, orgs: []string{"system:nodes"}, ext: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{
			name: kubeletServerName, cn: nodeName, dns: []string{nodeName, "localhost"},
			ips: append(append([]net.IP{}, loopback...), hostIPs...),
			ext: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		},
		// The bootstrap RBAC policy binds these user names to the components' cluster roles.
		{
			name: controllerManagerName, cn: "system:kube-controller-manager", dns: []string{"localhost"}, ips: loopback,
			ext: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		},
		{
			name: schedulerName, cn: "system:kube-scheduler", dns: []string{"localhost"}, ips: loopback,
			ext: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		},
	}
	if standinName != "" {
		leaves = append(leaves, leaf{
			name: standinClientName, cn: "system:node:" + standinName, orgs: []string{"system:nodes"},
			ext: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
	}
	for _, l := range leaves {
		if exists(p.path(l.name+".crt")) && exists(p.path(l.name+".key")) && p.matches(l) {
			continue
		}
		if err := p.writeLeaf(l, caCert, caKey); err != nil {
			return fmt.Errorf("certificate %s: %w", l.name, err)
		}
	}
	if !exists(p.path(serviceAccountKey + ".key")) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		if err := writeKey(p.path(serviceAccountKey+".key"), key); err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return err
		}
		if err := writePEM(p.path(serviceAccountKey+".pub"), "PUBLIC KEY", pub); err != nil {
			return err
		}
	}
	return nil
}

// matches tells whether the certificate on disk has the leaf's subject and names every address
// it should: a node whose address or name changed gets a new certificate, under the same CA.
func (p pki) matches(l leaf) bool {
	cert, _, err := loadPair(p.path(l.name+".crt"), p.path(l.name+".key"))
	if err != nil || cert.Subject.CommonName != l.cn {
		return false
	}
	for _, want := range l.ips {
		found := false
		for _, have := range cert.IPAddresses {
			found = found || have.Equal(want)
		}
		if !found {
			return false
		}
	}
	return true
}

func (p pki) ensureCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	crtPath, keyPath := p.path(caName+".crt"), p.path(caName+".key")
	if exists(crtPath) && exists(keyPath) {
		return loadPair(crtPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "oomwatch-local-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(crtPath, "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func (p pki) writeLeaf(l leaf, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.cn, Organization: l.orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  l.ext,
		DNSNames:     l.dns,
		IPAddresses:  l.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeKey(p.path(l.name+".key"), key); err != nil {
		return err
	}
	return writePEM(p.path(l.name+".crt"), "CERTIFICATE", der)
}

func loadPair(crtPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	crtPEM, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(crtPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("certificate or key is not PEM: " + crtPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("CA key is not ECDSA: " + keyPath)
	}
	return cert, key, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
