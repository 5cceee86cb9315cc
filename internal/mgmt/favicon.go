package mgmt

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"sync"
)

// favicon is a 32x32 icon (a PNG inside an ICO container, which every
// browser reads), drawn at first use: an orange rounded square with a
// white "W", so browsers asking for /favicon.ico get an icon, not a 404.
var favicon = sync.OnceValue(func() []byte {
	const n = 32
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	orange := color.NRGBA{0xf6, 0x82, 0x1f, 0xff}
	white := color.NRGBA{0xff, 0xff, 0xff, 0xff}
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			// rounded corners of radius 6
			dx, dy := max(6-x, x-(n-7), 0), max(6-y, y-(n-7), 0)
			if dx*dx+dy*dy <= 36 {
				img.Set(x, y, orange)
			}
		}
	}
	// a "W": four strokes from (7,8)-(11,24)-(16,12)-(21,24)-(25,8)
	pts := [][2]float64{{7, 8}, {11, 24}, {16, 12}, {21, 24}, {25, 8}}
	for i := 0; i+1 < len(pts); i++ {
		a, b := pts[i], pts[i+1]
		for t := 0.0; t <= 1; t += 0.01 {
			x, y := a[0]+(b[0]-a[0])*t, a[1]+(b[1]-a[1])*t
			for ox := -1; ox <= 1; ox++ {
				img.Set(int(x)+ox, int(y), white)
			}
		}
	}
	var p bytes.Buffer
	_ = png.Encode(&p, img)
	var ico bytes.Buffer
	le := binary.LittleEndian
	_ = binary.Write(&ico, le, [3]uint16{0, 1, 1}) // reserved, type icon, one image
	ico.Write([]byte{n, n, 0, 0})                  // width, height, palette, reserved
	_ = binary.Write(&ico, le, [2]uint16{1, 32})   // planes, bits per pixel
	_ = binary.Write(&ico, le, [2]uint32{uint32(p.Len()), 6 + 16})
	ico.Write(p.Bytes())
	return ico.Bytes()
})

func serveFavicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "image/x-icon")
	w.Header().Set("Cache-Control", "max-age=86400")
	if r.Method != http.MethodHead {
		_, _ = w.Write(favicon())
	}
}
