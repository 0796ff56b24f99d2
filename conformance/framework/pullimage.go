package framework

import (
	"fmt"
	"math/rand/v2"
)

// The shape of the pull benchmark's image (image.BenchmarkPull and
// berth-bench): the busybox base layer plus PullImageDataLayers layers of
// 25 MB each (about 100 MB in all), where data layer k (1-based) holds
// k*5 MB of random data and splits the rest between repetitive text and
// mostly-zero blocks. Half of the data is random, so the compressed image
// is a bit over 50 MB, as real images compress.
const (
	PullImageDataLayers = 4
	pullImageLayerBytes = 25_000_000
	pullImageRandomStep = 5_000_000
)

// PullImageFiles returns the data files of the pull benchmark's image,
// three per data layer (BuildImage spreads the files, sorted by path,
// evenly over the layers above the base: use Layers:
// PullImageDataLayers+1). They are the same in every run: the random data
// comes from a fixed ChaCha8 seed.
func PullImageFiles() []File {
	rng := rand.NewChaCha8([32]byte([]byte("berth BenchmarkPull image seed 1")))
	var files []File
	for k := 1; k <= PullImageDataLayers; k++ {
		random := make([]byte, k*pullImageRandomStep)
		rng.Read(random)
		rest := pullImageLayerBytes - len(random)

		// Repetitive text: gzip gets it down to a fraction.
		text := make([]byte, 0, rest/2+128)
		for i := 0; len(text) < rest/2; i++ {
			text = fmt.Appendf(text, "%08d berth pull benchmark: the quick brown fox jumps over the lazy dog\n", i)
		}
		text = text[:rest/2]

		// Zeros with eight random bytes at the start of every 4 KiB block.
		sparse := make([]byte, rest-len(text))
		for off := 0; off < len(sparse); off += 4096 {
			rng.Read(sparse[off:min(off+8, len(sparse))])
		}

		dir := fmt.Sprintf("data/layer%d/", k)
		files = append(files,
			File{Path: dir + "random.bin", Content: random},
			File{Path: dir + "sparse.bin", Content: sparse},
			File{Path: dir + "text.txt", Content: text, Mode: 0o600},
		)
	}
	return files
}
