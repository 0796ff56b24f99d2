package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is a throwaway certificate authority for one cluster: every component
// gets a certificate from it, and every component trusts only it. Keys are
// ECDSA P-256 (quick to make; Kubernetes takes them everywhere, service
// account tokens included).
type PKI struct {
	Dir    string
	CAFile string

	ca    *x509.Certificate
	caKey crypto.Signer
}

// KeyPair names a PEM certificate and its PEM private key.
type KeyPair struct{ Cert, Key string }

// CertRequest describes a certificate to issue.
type CertRequest struct {
	Name   string // file name stem under PKI.Dir
	CN     string
	Orgs   []string
	Server bool // serving certificate (else client only)
	Client bool
	DNS    []string
	IPs    []net.IP
}

// validity covers any test run, however slow, without being forever.
const validity = 48 * time.Hour

// NewPKI makes a CA in dir.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth-e2e-ca"},
		NotBefore:             now.Add(-time.Hour), // tolerate a little clock skew
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, CAFile: filepath.Join(dir, "ca.crt"), ca: ca, caKey: key}
	if err := writePEM(p.CAFile, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	return p, nil
}

// Issue makes a key and a certificate signed by the CA.
func (p *PKI) Issue(req CertRequest) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return KeyPair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CN, Organization: req.Orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     req.DNS,
		IPAddresses:  req.IPs,
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue %s: %w", req.Name, err)
	}
	kp := KeyPair{Cert: filepath.Join(p.Dir, req.Name+".crt"), Key: filepath.Join(p.Dir, req.Name+".key")}
	if err := writePEM(kp.Cert, "CERTIFICATE", der); err != nil {
		return KeyPair{}, err
	}
	return kp, writeKey(kp.Key, key)
}

// ServiceAccountKeys writes the key pair that signs (controller-manager,
// apiserver) and verifies (apiserver) service account tokens.
func (p *PKI) ServiceAccountKeys() (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return KeyPair{}, err
	}
	// Cert holds the public key here, not a certificate: the apiserver's
	// --service-account-key-file takes either.
	kp := KeyPair{Cert: filepath.Join(p.Dir, "sa.pub"), Key: filepath.Join(p.Dir, "sa.key")}
	if err := writePEM(kp.Cert, "PUBLIC KEY", pub); err != nil {
		return KeyPair{}, err
	}
	return kp, writeKey(kp.Key, key)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// Kubeconfig writes a kubeconfig for server with the client certificate kp.
func Kubeconfig(path, server, caFile string, kp KeyPair) error {
	// Plain text rather than clientcmd: the format is tiny and stable, and
	// clientcmd would pull in modules berth does not otherwise need.
	conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: e2e
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: e2e
  context:
    cluster: e2e
    user: e2e
current-context: e2e
`, server, caFile, kp.Cert, kp.Key)
	return os.WriteFile(path, []byte(conf), 0o600)
}
