package image

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"

	"github.com/containerd/errdefs"
)

// Auth is the registry credential a pull request carries (kubelet's image
// pull secrets). It is used for the one pull and never logged or stored.
type Auth struct {
	Username, Password string
	// Auth is base64("username:password").
	Auth string
	// ServerAddress limits the credential to one registry host.
	ServerAddress string
	// IdentityToken is an OAuth2 refresh token.
	IdentityToken string
	// RegistryToken is a bearer token sent as is.
	RegistryToken string
}

// String never prints secrets, whatever formats an Auth by mistake.
func (a *Auth) String() string {
	if a == nil {
		return "<no credentials>"
	}
	return "<credentials for " + a.ServerAddress + ">"
}

// credentials returns the username and secret for host, as containerd's
// resolver asks for them; an Auth restricted to another host yields none.
func (a *Auth) credentials(host string) (string, string, error) {
	if a == nil {
		return "", "", nil
	}
	if a.ServerAddress != "" && host != serverHost(a.ServerAddress) {
		return "", "", nil
	}
	switch {
	case a.Username != "":
		return a.Username, a.Password, nil
	case a.IdentityToken != "":
		return "", a.IdentityToken, nil
	case a.Auth != "":
		decoded, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("%w: the auth field of the pull credential is not base64", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(decoded), ":")
		if !ok {
			return "", "", fmt.Errorf("%w: the auth field of the pull credential is not base64(\"user:password\")", errdefs.ErrInvalidArgument)
		}
		return user, strings.Trim(pass, "\x00"), nil
	}
	return "", "", nil
}

// serverHost accepts "host", "host:port" or a URL, as docker config files write it.
func serverHost(addr string) string {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		return u.Host
	}
	return strings.TrimSuffix(addr, "/")
}

// fingerprint distinguishes pulls made with different credentials, so that
// identical concurrent pulls are merged only when their credentials match
// (a pull without access must never ride on one with access).
func (a *Auth) fingerprint() string {
	if a == nil {
		return ""
	}
	return strings.Join([]string{a.Username, a.Password, a.Auth, a.ServerAddress, a.IdentityToken, a.RegistryToken}, "\x00")
}
