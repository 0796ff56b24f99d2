package network

import "time"

// CNI operations as an Observer names them.
const (
	OpAdd = "ADD"
	OpDel = "DEL"
)

// Observer is told how each CNI operation of the Manager went, for
// metrics; cri wires it to Prometheus, this package knows nothing of it.
// It is called on the pod's path and must be quick.
type Observer interface {
	// CNIDone reports one Setup (OpAdd) or Teardown (OpDel): how long it
	// took and its error (nil on success).
	CNIDone(op string, took time.Duration, err error)
}

type nopObserver struct{}

func (nopObserver) CNIDone(string, time.Duration, error) {}
