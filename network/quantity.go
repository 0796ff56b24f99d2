package network

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Bounds kubelet applies to the bandwidth annotations (1 kbit/s to
// 1 Pbit/s); values outside them are certainly typos.
const (
	minBandwidth = 1_000
	maxBandwidth = 1_000_000_000_000_000
)

// suffixMultiplier is the factor a quantity suffix stands for.
func suffixMultiplier(suffix string) (*big.Rat, bool) {
	switch suffix {
	case "":
		return big.NewRat(1, 1), true
	case "m":
		return big.NewRat(1, 1000), true
	case "k":
		return pow(10, 3), true
	case "M":
		return pow(10, 6), true
	case "G":
		return pow(10, 9), true
	case "T":
		return pow(10, 12), true
	case "P":
		return pow(10, 15), true
	case "E":
		return pow(10, 18), true
	case "Ki":
		return pow(2, 10), true
	case "Mi":
		return pow(2, 20), true
	case "Gi":
		return pow(2, 30), true
	case "Ti":
		return pow(2, 40), true
	case "Pi":
		return pow(2, 50), true
	case "Ei":
		return pow(2, 60), true
	}
	if suffix[0] != 'e' && suffix[0] != 'E' {
		return nil, false
	}
	exp, err := strconv.ParseInt(suffix[1:], 10, 8)
	if err != nil || exp < -18 || exp > 18 {
		return nil, false
	}
	if exp < 0 {
		return new(big.Rat).Inv(pow(10, -exp)), true
	}
	return pow(10, exp), true
}

func pow(base, exp int64) *big.Rat {
	return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil))
}

// parseBandwidth reads a Kubernetes quantity ("10M", "1.5Gi", "100k",
// "1e6") as bits per second, rounding up as resource.Quantity.Value does.
// Berth does not depend on k8s.io/apimachinery, so the grammar is repeated
// here: a decimal number, then a decimal-SI or binary-SI suffix or a decimal
// exponent.
func parseBandwidth(s string) (uint64, error) {
	num, suffix := splitQuantity(s)
	if num == "" || strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("%q is not a bandwidth such as 10M (bits per second)", s)
	}
	val, ok := new(big.Rat).SetString(strings.TrimPrefix(num, "+"))
	if !ok {
		return 0, fmt.Errorf("%q is not a bandwidth such as 10M (bits per second)", s)
	}
	mult, ok := suffixMultiplier(suffix)
	if !ok {
		return 0, fmt.Errorf("%q has an unknown suffix %q (use k, M, G, T, P, Ki, Mi, Gi, ...)", s, suffix)
	}
	val.Mul(val, mult)
	// Round up to whole bits, as Kubernetes does.
	bits := new(big.Int).Quo(val.Num(), val.Denom())
	if new(big.Rat).SetInt(bits).Cmp(val) < 0 {
		bits.Add(bits, big.NewInt(1))
	}
	switch {
	case bits.Cmp(big.NewInt(minBandwidth)) < 0:
		return 0, fmt.Errorf("%q is unreasonably small (< 1kbit/s)", s)
	case bits.Cmp(big.NewInt(maxBandwidth)) > 0:
		return 0, fmt.Errorf("%q is unreasonably large (> 1Pbit/s)", s)
	}
	return bits.Uint64(), nil
}

// splitQuantity splits "1.5Gi" into "1.5" and "Gi".
func splitQuantity(s string) (num, suffix string) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		if s[i] != '.' {
			digits++
		}
		i++
	}
	if digits == 0 {
		return "", s
	}
	return s[:i], s[i:]
}
