package framework

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	// Registers the runtime.v1 descriptors read below.
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RPC is one CRI method, read from the compiled-in API descriptors so that a
// new cri-api version's RPCs are covered without editing a list.
type RPC struct {
	Service         protoreflect.FullName
	Name            string
	ServerStreaming bool
	input, output   protoreflect.MessageDescriptor
}

// FullMethod is the gRPC method path, e.g. /runtime.v1.RuntimeService/Version.
func (r RPC) FullMethod() string { return fmt.Sprintf("/%s/%s", r.Service, r.Name) }

// AllRPCs lists every RPC of RuntimeService and ImageService.
func AllRPCs() ([]RPC, error) {
	var out []RPC
	for _, name := range []protoreflect.FullName{"runtime.v1.RuntimeService", "runtime.v1.ImageService"} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			return nil, fmt.Errorf("CRI service %s: %w", name, err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			m := methods.Get(i)
			out = append(out, RPC{Service: name, Name: string(m.Name()), ServerStreaming: m.IsStreamingServer(),
				input: m.Input(), output: m.Output()})
		}
	}
	return out, nil
}

// CallEmpty invokes r with an empty request and returns the error (nil on
// success). For a server-streaming RPC it waits for the first message or the
// end of the stream; ctx bounds the wait.
func CallEmpty(ctx context.Context, conn grpc.ClientConnInterface, r RPC) error {
	req := dynamicpb.NewMessage(r.input)
	resp := dynamicpb.NewMessage(r.output)
	if !r.ServerStreaming {
		return conn.Invoke(ctx, r.FullMethod(), req, resp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, r.FullMethod())
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if err := stream.RecvMsg(resp); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
