package broker

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Resource alarms, as RabbitMQ raises them: when the node's memory use is
// above vm_memory_high_watermark (relative to total memory, or absolute)
// or the free disk space under the data directory is below
// disk_free_limit, publishing connections are blocked (connection.blocked
// is sent to clients that support it, and their publishes are held) while
// consumers keep draining. connection.unblocked follows when it clears.

func (b *Broker) alarmLoop(stop <-chan struct{}) {
	t := time.NewTicker(b.alarmEvery)
	defer t.Stop()
	for {
		b.checkAlarms()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// memoryLimit returns the watermark in bytes.
func (b *Broker) memoryLimit() int64 {
	cfg := b.Config()
	if cfg.VMMemoryHighWatermarkAbsolute > 0 {
		return cfg.VMMemoryHighWatermarkAbsolute
	}
	return int64(cfg.VMMemoryHighWatermark * float64(totalMemory()))
}

func (b *Broker) checkAlarms() {
	// one check at a time: a periodic check computed with the old limit
	// must not undo the result of a check that follows a limit change
	b.checkMu.Lock()
	defer b.checkMu.Unlock()
	mem := residentMemory()
	memAlarm := mem > 0 && mem > b.memoryLimit()
	diskAlarm, free := false, int64(0)
	cfg := b.Config()
	if cfg.DiskFreeLimitRelative > 0 {
		cfg.DiskFreeLimit = int64(cfg.DiskFreeLimitRelative * float64(totalMemory()))
	}
	if cfg.DataDir != "" && cfg.DiskFreeLimit > 0 {
		var st syscall.Statfs_t
		if syscall.Statfs(cfg.DataDir, &st) == nil {
			free = int64(st.Bavail) * int64(st.Bsize)
			diskAlarm = free < cfg.DiskFreeLimit
		}
	}
	b.pageUnderPressure(mem)
	b.setAlarm("memory", memAlarm, mem)
	b.setAlarm("disk", diskAlarm, free)
}

func (b *Broker) setAlarm(kind string, on bool, value int64) {
	b.alarmMu.Lock()
	was := b.alarms[kind]
	b.alarms[kind] = on
	any := false
	for _, v := range b.alarms {
		any = any || v
	}
	b.alarmMu.Unlock()
	if was == on {
		return
	}
	if on && kind == "disk" {
		b.log.Warn("resource alarm raised: publishers are blocked; free disk space under the data directory or lower disk_free_limit", "alarm", kind, "free_bytes", value, "limit_bytes", b.Config().DiskFreeLimit)
	} else if on {
		b.log.Warn("resource alarm raised: publishers are blocked", "alarm", kind, "memory_bytes", value, "limit_bytes", b.memoryLimit())
	} else {
		b.log.Info("resource alarm cleared", "alarm", kind)
	}
	reason := "low on " + map[string]string{"memory": "memory", "disk": "disk space"}[kind]
	b.blocked.Store(any)
	for _, c := range b.Connections() {
		c.SetBlocked(any, reason)
	}
}

// Alarms returns the active alarms.
func (b *Broker) Alarms() []string {
	b.alarmMu.Lock()
	defer b.alarmMu.Unlock()
	var out []string
	for k, v := range b.alarms {
		if v {
			out = append(out, k)
		}
	}
	return out
}

// PublishAllowed reports whether publishers may proceed (conn.Server).
func (b *Broker) PublishAllowed() bool { return !b.blocked.Load() }

func totalMemory() int64 {
	return meminfo("MemTotal:")
}

func meminfo(key string) int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, key) {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

func residentMemory() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// pageUnderPressure turns paging on above the paging ratio of the memory
// watermark (RabbitMQ's vm_memory_high_watermark_paging_ratio, 0.5 by
// default): queues then keep only the head of their backlog in memory and
// move the rest of their message bodies to disk.
func (b *Broker) pageUnderPressure(mem int64) {
	limit := b.memoryLimit()
	if b.msgs != nil {
		b.memory.SetBudget(b.bodyBudget())
	}
	ratio := b.Config().VMMemoryHighWatermarkPagingRatio
	if ratio <= 0 {
		ratio = 0.5
	}
	on := mem > 0 && limit > 0 && float64(mem) > ratio*float64(limit)
	if on != b.memory.Pressure() {
		if on {
			b.log.Warn("memory above the paging threshold: queues move message bodies to disk", "memory_bytes", mem, "threshold_bytes", int64(ratio*float64(limit)))
		} else {
			b.log.Info("memory below the paging threshold again", "memory_bytes", mem)
		}
	}
	b.memory.SetPressure(on)
	if !on || b.memory.Used() < 1<<20 {
		return
	}
	var freed int64
	for _, name := range b.VHostNames() {
		v := b.VHost(name)
		if v == nil {
			continue
		}
		for _, q := range v.Queues() {
			freed += q.PageOut()
		}
	}
	if freed > 0 {
		b.log.Info("paged message bodies out of memory", "bytes", freed)
	}
}

// SetDiskFreeLimit changes disk_free_limit (bytes) and checks the alarms
// at once (rabbitmqctl set_disk_free_limit).
func (b *Broker) SetDiskFreeLimit(n int64) {
	b.mu.Lock()
	b.cfg.DiskFreeLimit, b.cfg.DiskFreeLimitRelative = n, 0
	b.mu.Unlock()
	b.checkAlarms()
}

// TotalMemory returns the machine's memory in bytes (0 if unknown).
func TotalMemory() int64 { return totalMemory() }

// MemoryLimit returns the memory high watermark in bytes (mem_limit in
// the management API).
func (b *Broker) MemoryLimit() int64 { return b.memoryLimit() }

// MemoryUsed returns the node's resident memory in bytes, the figure the
// memory alarm compares with MemoryLimit.
func MemoryUsed() int64 { return residentMemory() }

// DiskFreeLimit returns the effective free disk space limit in bytes.
func (b *Broker) DiskFreeLimit() int64 {
	cfg := b.Config()
	if cfg.DiskFreeLimitRelative > 0 {
		return int64(cfg.DiskFreeLimitRelative * float64(totalMemory()))
	}
	return cfg.DiskFreeLimit
}

// DiskFree returns the free disk space under the data directory in bytes
// (-1 when it cannot be read).
func (b *Broker) DiskFree() int64 {
	dir := b.Config().DataDir
	if dir == "" {
		dir = "."
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
