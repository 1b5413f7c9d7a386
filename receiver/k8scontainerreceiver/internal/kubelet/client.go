// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package kubelet fetches the Summary API (/stats/summary) and the cAdvisor metrics
// (/metrics/cadvisor) of one kubelet.
package kubelet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	stats "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Auth types of the kubelet connection.
const (
	AuthServiceAccount = "serviceAccount"
	AuthTLS            = "tls"
	AuthKubeConfig     = "kubeConfig"
	AuthNone           = "none"
)

// Service-account files mounted into every pod that has a service account.
const (
	ServiceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token" //nolint:gosec // a path, not a credential
	ServiceAccountCA    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// maxSummaryBytes bounds the body read: a node at its pod limit answers with a few MiB.
const maxSummaryBytes = 64 << 20

// Reasons of a failed request, as they appear in self-telemetry.
const (
	ReasonTransport = "transport"
	ReasonTimeout   = "timeout"
	ReasonStatus    = "status"
	ReasonDecode    = "decode"
)

// Error is a failed Summary request with the reason it failed.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Settings say how to reach and authenticate to a kubelet.
type Settings struct {
	AuthType string
	// CAFile verifies the kubelet's serving certificate; empty means the service-account CA
	// for serviceAccount, the kubeconfig's CA for kubeConfig, the system roots otherwise.
	CAFile             string
	CertFile           string
	KeyFile            string
	InsecureSkipVerify bool
	Timeout            time.Duration
	// TokenFile is the bearer token of serviceAccount; empty means ServiceAccountToken.
	TokenFile string
	// RestConfig carries the credentials of kubeConfig.
	RestConfig *rest.Config
}

// Client requests the Summary API; it is safe for concurrent use.
type Client struct {
	http  *http.Client
	token *fileToken
}

// NewClient builds the TLS and credentials of s. It reads the CA and client certificate now,
// and the service-account token on every request where it changed.
func NewClient(s Settings) (*Client, error) {
	c := &Client{}
	var rt http.RoundTripper
	switch s.AuthType {
	case AuthKubeConfig:
		if s.RestConfig == nil {
			return nil, errors.New("kubeConfig auth needs a kubeconfig")
		}
		cfg := rest.CopyConfig(s.RestConfig)
		if s.CAFile != "" {
			cfg.CAFile, cfg.CAData = s.CAFile, nil
		}
		if s.InsecureSkipVerify {
			cfg.Insecure, cfg.CAFile, cfg.CAData = true, "", nil
		}
		var err error
		if rt, err = rest.TransportFor(cfg); err != nil {
			return nil, fmt.Errorf("kubelet transport from kubeconfig: %w", err)
		}
	case AuthServiceAccount, AuthTLS, AuthNone:
		caFile := s.CAFile
		if caFile == "" && s.AuthType == AuthServiceAccount {
			caFile = ServiceAccountCA
		}
		tlsCfg, err := tlsConfig(caFile, s.CertFile, s.KeyFile, s.InsecureSkipVerify)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		tr.MaxIdleConnsPerHost = 1
		rt = tr
		if s.AuthType == AuthServiceAccount {
			path := s.TokenFile
			if path == "" {
				path = ServiceAccountToken
			}
			c.token = &fileToken{path: path}
			if _, err := c.token.get(); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unknown kubelet auth type %q", s.AuthType)
	}
	c.http = &http.Client{Transport: rt, Timeout: s.Timeout}
	return c, nil
}

// Summary fetches and decodes GET <endpoint>/stats/summary. endpoint is host:port (https is
// implied) or a URL.
func (c *Client) Summary(ctx context.Context, endpoint string) (*stats.Summary, error) {
	resp, err := c.get(ctx, endpoint, "/stats/summary", "application/json")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var summary stats.Summary
	body := io.LimitReader(resp.Body, maxSummaryBytes)
	err = json.NewDecoder(body).Decode(&summary)
	// Read to the end so the connection, and its TLS session, is kept for the next scrape.
	_, _ = io.Copy(io.Discard, body)
	if err != nil {
		reason := ReasonDecode
		if r := classify(err); r == ReasonTimeout {
			reason = r
		}
		return nil, &Error{Reason: reason, Err: fmt.Errorf("decoding summary from %s: %w", resp.Request.URL.Redacted(), err)}
	}
	return &summary, nil
}

// get sends GET <endpoint><path> with the client's credentials and returns a 200 answer, whose
// body the caller closes; any other outcome is an *Error.
func (c *Client) get(ctx context.Context, endpoint, path, accept string) (*http.Response, error) {
	url := endpoint
	if !strings.Contains(url, "://") {
		url = "https://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+path, http.NoBody)
	if err != nil {
		return nil, &Error{Reason: ReasonTransport, Err: err}
	}
	req.Header.Set("Accept", accept)
	if c.token != nil {
		tok, err := c.token.get()
		if err != nil {
			return nil, &Error{Reason: ReasonTransport, Err: err}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Reason: classify(err), Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		return nil, &Error{Reason: ReasonStatus, Err: fmt.Errorf("GET %s: %s", req.URL.Redacted(), resp.Status)}
	}
	return resp, nil
}

// Close releases idle connections.
func (c *Client) Close() {
	if c != nil && c.http != nil {
		c.http.CloseIdleConnections()
	}
}

func classify(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ReasonTimeout
	}
	return ReasonTransport
}

func tlsConfig(caFile, certFile, keyFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		cfg.InsecureSkipVerify = true
	} else if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading kubelet CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in kubelet CA file %s", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading kubelet client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
