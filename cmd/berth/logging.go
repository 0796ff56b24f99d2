package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/berth-runtime/berth/internal/config"
	"github.com/sirupsen/logrus"
)

// newLogger makes the daemon's logger. Its level is a LevelVar, so that a
// reload (SIGHUP) changes it for every logger derived from this one.
func newLogger(cfg config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := &slog.LevelVar{}
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	if cfg.Log.Format == "json" {
		log = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		log = slog.New(slog.NewTextHandler(w, opts))
	}
	routeLibraryLogs(log)
	setLogLevel(level, cfg.Log.Level)
	return log, level
}

// setLogLevel sets berth's level and that of the libraries' logrus.
func setLogLevel(v *slog.LevelVar, name string) {
	level := parseLevel(name)
	v.Set(level)
	logrus.SetLevel(toLogrusLevel(level))
}

// parseLevel reads a validated log.level ("debug", "info", ...).
func parseLevel(name string) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(name)) // validated by config
	return level
}

// routeLibraryLogs sends what containerd's libraries log through logrus
// (containerd/log) into berth's own log, with its level and format, so an
// operator reads one log.
func routeLibraryLogs(log *slog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.AddHook(&logrusToSlog{log: log.With("component", "containerd")})
}

func toLogrusLevel(l slog.Level) logrus.Level {
	switch {
	case l <= slog.LevelDebug:
		return logrus.DebugLevel
	case l <= slog.LevelInfo:
		return logrus.InfoLevel
	case l <= slog.LevelWarn:
		return logrus.WarnLevel
	}
	return logrus.ErrorLevel
}

type logrusToSlog struct{ log *slog.Logger }

func (h *logrusToSlog) Levels() []logrus.Level { return logrus.AllLevels }

func (h *logrusToSlog) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch e.Level {
	case logrus.InfoLevel:
		level = slog.LevelInfo
	case logrus.WarnLevel:
		level = slog.LevelWarn
	case logrus.ErrorLevel, logrus.FatalLevel, logrus.PanicLevel:
		level = slog.LevelError
	}
	attrs := make([]slog.Attr, 0, len(e.Data))
	for k, v := range e.Data {
		attrs = append(attrs, slog.Any(k, v))
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	h.log.LogAttrs(ctx, level, e.Message, attrs...)
	return nil
}
