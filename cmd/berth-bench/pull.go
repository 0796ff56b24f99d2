package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pullPhase pulls the pull image into each runtime in turn, removing it
// before (untimed); the registry's counters tell whether every layer was
// really downloaded.
func (b *bench) pullPhase(ctx context.Context) error {
	img := b.imgs.pull
	if img == nil || b.opts.pulls == 0 {
		return nil
	}
	for _, t := range b.targets {
		t.res.Pull = &PullResult{Layers: len(img.layers), CompressedMB: float64(img.compressed) / 1e6, UncompressedMB: float64(img.uncompressed) / 1e6}
	}
	remove := func(t *target) error {
		_, err := t.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img.ref}})
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("%s: RemoveImage: %w", t.name, err)
		}
		return nil
	}
	for i := range b.opts.pulls {
		for _, t := range b.order(i) {
			b.phase(t, fmt.Sprintf("pull %d/%d", i+1, b.opts.pulls))
			if err := remove(t); err != nil {
				return err
			}
			before := make([]int, len(img.layers))
			for k, l := range img.layers {
				before[k] = b.reg.blobFetches(l)
			}
			// Write back what earlier phases left dirty, so that this
			// pull is not billed for it.
			syscall.Sync()
			start := time.Now()
			if _, err := t.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.ref}}); err != nil {
				return fmt.Errorf("%s: PullImage: %w", t.name, err)
			}
			s := time.Since(start).Seconds()
			p := t.res.Pull
			p.Seconds = append(p.Seconds, float64(int(s*1000))/1000)
			for k, l := range img.layers {
				if b.reg.blobFetches(l) == before[k] {
					p.Cached = true
				}
			}
		}
	}
	for _, t := range b.targets {
		p := t.res.Pull
		var rates, unpacked []float64
		for _, s := range p.Seconds {
			rates = append(rates, p.CompressedMB/s)
			unpacked = append(unpacked, p.UncompressedMB/s)
		}
		p.MBps, p.UnpackedMBps = median(rates), median(unpacked)
		if err := remove(t); err != nil {
			return err
		}
	}
	return nil
}
