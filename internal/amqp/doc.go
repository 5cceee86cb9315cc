// Package amqp is Warren's AMQP 0-9-1 codec: frames, methods (generated
// from the spec XML by ./gen), field tables, content properties and the
// protocol's error type. It uses only the standard library.
//
//	fr := amqp.NewFrameReader(conn, amqp.DefaultFrameMax)
//	if err := fr.ReadProtocolHeader(); err != nil { ... }
//	f, err := fr.ReadFrame()
//	m, err := amqp.DecodeMethod(f.Payload)   // e.g. *amqp.ConnectionStartOk
//	buf, err = amqp.AppendMethodFrame(buf, 0, &amqp.ConnectionTuneOk{FrameMax: 131072})
package amqp

//go:generate go run ./gen -out spec_gen.go
