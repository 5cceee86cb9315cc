package mgmt

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed ui
var uiFiles embed.FS

// serveUI serves the embedded single-page web UI (no CDN; works offline).
func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	sub, _ := fs.Sub(uiFiles, "ui")
	http.FileServer(http.FS(sub)).ServeHTTP(w, r)
}
