package conformance

import (
	"testing"

	"github.com/berth-runtime/berth/conformance/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }
