// Command imagebuild writes the usersd container image as an OCI archive,
// offline and without a daemon or root: a static binary at /usersd on an
// empty base plus what a Go server needs at run time (CA certificates, a
// passwd and group entry for the nonroot user 65532, a writable /tmp). It is
// the image the Dockerfile builds (runtime gcr.io/distroless/static-debian12:nonroot),
// for machines that can pull neither golang nor distroless.
//
// The output is reproducible: every timestamp is -created, so the same
// binary, certificates and flags give the same digests. The archive is an OCI
// image layout (index.json, oci-layout, blobs/sha256/...) that also carries a
// Docker manifest.json, the shape `docker save` writes since Docker 25, so
// `podman load` and every `docker load` accept it.
//
//	go -C tools run ./imagebuild -binary ../bin/usersd-linux-static -out ../bin/usersd-image.tar \
//	    -version v1.2.3 -revision $(git rev-parse HEAD)
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The nonroot user of the distroless images.
const (
	uid      = 65532
	userName = "nonroot"
	home     = "/home/nonroot"
)

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
	certsPath = "/etc/ssl/certs/ca-certificates.crt"
)

type labels map[string]string

func (l labels) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labels) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, not %q", s)
	}
	l[k] = v
	return nil
}

func main() {
	var (
		binary   = flag.String("binary", "", "the static usersd binary (required)")
		out      = flag.String("out", "", "the OCI archive to write (required)")
		name     = flag.String("name", "usersd", "image name")
		tag      = flag.String("tag", "latest", "tag the archive loads as")
		version  = flag.String("version", "dev", "usersd version: a second tag and the version label")
		revision = flag.String("revision", "", "source revision (the revision label)")
		certs    = flag.String("cacerts", certsPath, "CA certificate bundle to install at "+certsPath)
		created  = flag.Int64("created", epoch(), "creation time, Unix seconds (default: $SOURCE_DATE_EPOCH or 0)")
		port     = flag.String("port", "8000/tcp", "exposed port")
		extra    = labels{}
	)
	flag.Var(extra, "label", "an extra label key=value (repeatable)")
	flag.Parse()
	if *binary == "" || *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	err := build(options{
		binary: *binary, out: *out, name: *name, tags: uniq(*tag, *version), version: *version,
		revision: *revision, certs: *certs, created: time.Unix(*created, 0).UTC(), port: *port, labels: extra,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func epoch() int64 {
	n, _ := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	return n
}

// uniq is tags without empty and repeated ones, in order.
func uniq(tags ...string) []string {
	var r []string
	for _, t := range tags {
		if t != "" && !slices.Contains(r, t) {
			r = append(r, t)
		}
	}
	return r
}

type options struct {
	binary, out, name, version, revision, certs, port string
	tags                                              []string
	created                                           time.Time
	labels                                            map[string]string
}

func build(o options) error {
	arch, err := staticELF(o.binary)
	if err != nil {
		return err
	}
	for _, t := range o.tags {
		if !validTag(t) {
			return fmt.Errorf("%q is not a valid image tag", t)
		}
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(o.certs)
	if err != nil {
		return fmt.Errorf("CA certificates: %w (install Debian's ca-certificates package)", err)
	}

	// Two layers: the base changes only with the certificates, so it is
	// shared between versions; the binary is the second.
	base, err := tarLayer(o.created, []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: uid},
		{name: "tmp/", mode: 0o1777},
	})
	if err != nil {
		return err
	}
	app, err := tarLayer(o.created, []entry{{name: "usersd", mode: 0o755, data: bin}})
	if err != nil {
		return err
	}

	lbl := map[string]string{
		"org.opencontainers.image.title":       o.name,
		"org.opencontainers.image.description": "usersd: a users API (Connect, gRPC, gRPC-Web and JSON REST) on PostgreSQL",
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
	}
	if o.revision != "" {
		lbl["org.opencontainers.image.revision"] = o.revision
	}
	for k, v := range o.labels {
		lbl[k] = v
	}
	cfg := &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: o.created},
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", uid, uid),
			Entrypoint: []string{"/usersd"},
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"SSL_CERT_FILE=" + certsPath,
			},
			WorkingDir:   "/",
			ExposedPorts: map[string]struct{}{o.port: {}},
			Labels:       lbl,
			StopSignal:   "SIGTERM",
			// Docker honours this; podman ignores it in OCI images (use
			// --health-cmd /usersd healthcheck there).
			Healthcheck: &v1.HealthConfig{
				Test:        []string{"CMD", "/usersd", "healthcheck"},
				Interval:    30 * time.Second,
				Timeout:     5 * time.Second,
				StartPeriod: 10 * time.Second,
				Retries:     3,
			},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: o.created}, CreatedBy: "imagebuild: CA certificates, passwd and group (nonroot 65532), /home/nonroot, /tmp",
		}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: o.created}, CreatedBy: "imagebuild: /usersd " + o.version,
		}},
	)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	tmp := o.out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	s, err := writeArchive(f, img, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return err
	}
	fi, err := os.Stat(o.out)
	if err != nil {
		return err
	}
	fmt.Printf("image %s:%s (%s/%s) -> %s\n", o.name, strings.Join(o.tags, ", "), "linux", arch, o.out)
	fmt.Printf("  manifest %s\n  image id %s\n", s.manifest, s.config)
	fmt.Printf("  size: %s compressed (layers + config + manifest, as pushed), %s uncompressed (unpacked layers); archive %s; binary %s\n",
		mb(s.compressed), mb(s.uncompressed), mb(fi.Size()), mb(int64(len(bin))))
	return nil
}

func mb(n int64) string {
	return fmt.Sprintf("%.2f MB (%.2f MiB, %d bytes)", float64(n)/1e6, float64(n)/(1<<20), n)
}

// validTag is the reference grammar's tag.
func validTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// staticELF checks that path is a Linux executable that needs no dynamic
// loader or shared library (the image has none) and returns its GOARCH.
func staticELF(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; the image has no libc: build it with CGO_ENABLED=0", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return "", fmt.Errorf("%s needs shared libraries %v; build it with CGO_ENABLED=0", path, libs)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%s is not an executable", path)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("%s: unsupported machine %v", path, f.Machine)
}

// entry is one file or directory (name ending in /) of a layer, owned by
// uid:uid (root when 0).
type entry struct {
	name string
	mode int64
	uid  int
	data []byte
}

// tarLayer is a gzip-compressed OCI layer of entries, every timestamp t.
func tarLayer(t time.Time, entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: t, Format: tar.FormatPAX,
			Typeflag: tar.TypeReg, Size: int64(len(e.data)),
		}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

type sizes struct {
	manifest, config         v1.Hash
	compressed, uncompressed int64
}

// writeArchive writes img as a tar of an OCI image layout plus a Docker
// manifest.json, every entry in a fixed order with time o.created.
func writeArchive(w io.Writer, img v1.Image, o options) (sizes, error) {
	var s sizes
	rawManifest, err := img.RawManifest()
	if err != nil {
		return s, err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return s, err
	}
	if s.manifest, err = img.Digest(); err != nil {
		return s, err
	}
	if s.config, err = img.ConfigName(); err != nil {
		return s, err
	}
	layers, err := img.Layers()
	if err != nil {
		return s, err
	}

	blobs := map[string]func() (io.ReadCloser, int64, error){}
	static := func(b []byte) func() (io.ReadCloser, int64, error) {
		return func() (io.ReadCloser, int64, error) { return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil }
	}
	blobs[s.manifest.Hex] = static(rawManifest)
	blobs[s.config.Hex] = static(rawConfig)
	s.compressed = int64(len(rawManifest) + len(rawConfig))
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return s, err
		}
		size, err := l.Size()
		if err != nil {
			return s, err
		}
		u, err := l.Uncompressed()
		if err != nil {
			return s, err
		}
		n, err := io.Copy(io.Discard, u)
		u.Close()
		if err != nil {
			return s, err
		}
		s.compressed += size
		s.uncompressed += n
		layerPaths = append(layerPaths, "blobs/sha256/"+d.Hex)
		blobs[d.Hex] = func() (io.ReadCloser, int64, error) {
			rc, err := l.Compressed()
			return rc, size, err
		}
	}

	ref := o.name + ":" + o.tags[0]
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIImageIndex,
		"manifests": []map[string]any{{
			"mediaType": types.OCIManifestSchema1,
			"digest":    s.manifest.String(),
			"size":      len(rawManifest),
			// podman names the image after ref.name (localhost/usersd:latest);
			// Docker, also with the containerd store, after manifest.json's
			// RepoTags (usersd:latest and usersd:VERSION).
			"annotations": map[string]string{"org.opencontainers.image.ref.name": ref},
		}},
	})
	if err != nil {
		return s, err
	}
	var repoTags []string
	for _, t := range o.tags {
		repoTags = append(repoTags, o.name+":"+t)
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config":   "blobs/sha256/" + s.config.Hex,
		"RepoTags": repoTags,
		"Layers":   layerPaths,
	}})
	if err != nil {
		return s, err
	}

	tw := tar.NewWriter(w)
	hdr := func(name string, mode, size int64, typ byte) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, Typeflag: typ, ModTime: o.created, Format: tar.FormatPAX})
	}
	file := func(name string, b []byte) error {
		if err := hdr(name, 0o644, int64(len(b)), tar.TypeReg); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := hdr(d, 0o755, 0, tar.TypeDir); err != nil {
			return s, err
		}
	}
	hexes := make([]string, 0, len(blobs))
	for h := range blobs {
		hexes = append(hexes, h)
	}
	sort.Strings(hexes)
	for _, h := range hexes {
		rc, size, err := blobs[h]()
		if err != nil {
			return s, err
		}
		if err := hdr("blobs/sha256/"+h, 0o644, size, tar.TypeReg); err != nil {
			rc.Close()
			return s, err
		}
		n, err := io.Copy(tw, rc)
		rc.Close()
		if err != nil {
			return s, err
		}
		if n != size {
			return s, fmt.Errorf("blob %s: wrote %d bytes, want %d", h, n, size)
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"index.json", index},
		{"manifest.json", dockerManifest},
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	} {
		if err := file(f.name, f.data); err != nil {
			return s, err
		}
	}
	if err := tw.Close(); err != nil {
		return s, err
	}
	return s, nil
}
