package main

// Report is the machine-readable output (--json): the run, each runtime's
// results and the comparison table.
type Report struct {
	Date        string       `json:"date"`
	Host        Host         `json:"host"`
	Settings    Settings     `json:"settings"`
	Runtimes    []*Result    `json:"runtimes"`
	Comparisons []Comparison `json:"comparisons"`
}

// Host is the machine the run was on.
type Host struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"`
	CPUs     int    `json:"cpus"`
	MemoryMB int64  `json:"memory_mb"`
	// LoadStart and LoadEnd are /proc/loadavg when the run began and ended.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
}

// Settings are the knobs of the run.
type Settings struct {
	Iterations     int    `json:"iterations"`
	Concurrency    int    `json:"concurrency"`
	ConcurrentPods int    `json:"concurrent_pods"`
	DensityPods    []int  `json:"density_pods"`
	Queries        int    `json:"queries"`
	QueryBudget    string `json:"query_budget"`
	Pulls          int    `json:"pulls"`
	Settle         string `json:"settle"`
	Image          string `json:"image"`
	PullImage      string `json:"pull_image"`
}

// Result is everything measured on one runtime.
type Result struct {
	Name           string `json:"name"`
	Endpoint       string `json:"endpoint"`
	RuntimeName    string `json:"runtime_name"`
	RuntimeVersion string `json:"runtime_version"`
	DaemonPID      int    `json:"daemon_pid,omitempty"`
	PerPodProcess  string `json:"per_pod_process,omitempty"`

	// PodStart is RunPodSandbox + CreateContainer + StartContainer, one pod
	// at a time; PodStartParts splits it by RPC.
	PodStart      Summary            `json:"pod_start"`
	PodStartParts map[string]Summary `json:"pod_start_parts"`
	// Teardown is StopContainer + RemoveContainer + StopPodSandbox +
	// RemovePodSandbox of such a pod.
	Teardown Summary `json:"teardown"`
	// The same with Concurrency clients at once.
	PodStartConcurrent Summary `json:"pod_start_concurrent"`
	TeardownConcurrent Summary `json:"teardown_concurrent"`

	// Density is one entry per density step (e.g. 20 and 100 pods).
	Density []DensityStep `json:"density"`
	// MemoryIdle is the runtime's memory with none of the bench's pods.
	MemoryIdle *MemorySample `json:"memory_idle"`
	// Queries are read RPC latencies at the largest density step.
	Queries map[string]Summary `json:"queries"`

	Pull *PullResult `json:"pull,omitempty"`
	// Load is /proc/loadavg at the start of each phase on this runtime.
	Load []PhaseLoad `json:"load"`
}

// DensityStep is a batch of pods started by Concurrency clients, measured
// while they run, then removed.
type DensityStep struct {
	Pods int `json:"pods"`
	// StartSeconds is from the first RunPodSandbox until the last
	// StartContainer returned (and ListContainers confirmed every container
	// running).
	StartSeconds  float64      `json:"start_seconds"`
	RemoveSeconds float64      `json:"remove_seconds"`
	Memory        MemorySample `json:"memory"`
}

// MemorySample is the PSS of the runtime's processes.
type MemorySample struct {
	DaemonKB int64 `json:"daemon_pss_kb"`
	// DaemonAnonKB and DaemonFileKB split DaemonKB (Pss_Anon, Pss_File).
	DaemonAnonKB  int64 `json:"daemon_pss_anon_kb"`
	DaemonFileKB  int64 `json:"daemon_pss_file_kb"`
	DaemonThreads int   `json:"daemon_threads"`
	// PerPodProcesses and PerPodKB: the runtime's per-pod processes
	// (berth-monitor, containerd-shim-runc-v2) found and their PSS sum.
	PerPodProcesses int   `json:"per_pod_processes"`
	PerPodKB        int64 `json:"per_pod_pss_kb"`
	PerPodAnonKB    int64 `json:"per_pod_pss_anon_kb"`
	Measured        bool  `json:"measured"`
}

// PullResult is PullImage of the pull image into a runtime that does not
// have it, repeated.
type PullResult struct {
	Layers         int       `json:"layers"`
	CompressedMB   float64   `json:"compressed_mb"`
	UncompressedMB float64   `json:"uncompressed_mb"`
	Seconds        []float64 `json:"seconds"`
	// MBps is the median of compressed MB per second; UnpackedMBps the
	// same in uncompressed bytes.
	MBps         float64 `json:"mb_per_s"`
	UnpackedMBps float64 `json:"unpacked_mb_per_s"`
	// Cached is set when a pull did not fetch every layer from the
	// registry (the runtime kept the content after RemoveImage), which
	// makes the figure meaningless.
	Cached bool `json:"cached,omitempty"`
}

// PhaseLoad is the load average when a phase started.
type PhaseLoad struct {
	Phase   string `json:"phase"`
	LoadAvg string `json:"loadavg"`
}

// perPodKB is what the runtime costs per pod at step: the daemon's growth
// over idle plus the per-pod processes' PSS, divided by the pods.
func (r *Result) perPodKB(step DensityStep) (float64, bool) {
	if r.MemoryIdle == nil || !r.MemoryIdle.Measured || !step.Memory.Measured || step.Pods == 0 {
		return 0, false
	}
	growth := step.Memory.DaemonKB - r.MemoryIdle.DaemonKB
	procs := step.Memory.PerPodKB - r.MemoryIdle.PerPodKB
	return float64(growth+procs) / float64(step.Pods), true
}

// step returns the density step with n pods.
func (r *Result) step(n int) (DensityStep, bool) {
	for _, s := range r.Density {
		if s.Pods == n {
			return s, true
		}
	}
	return DensityStep{}, false
}
