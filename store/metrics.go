package store

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports the connection pool's state as Prometheus metrics
// (contractd_db_pool_*): its configured size, the connections open, in use
// and idle, how often requests waited for a connection and the time acquiring took,
// which is what to watch when choosing CONTRACTD_DB_MAX_CONNS.
func PoolCollector(pool *pgxpool.Pool) prometheus.Collector {
	return poolCollector{pool: pool, d: poolDescs}
}

// ReadPoolCollector exports the read pool's state (CONTRACTD_DB_READ_URL's,
// see Reads) as PoolCollector does the primary's, as
// contractd_db_read_pool_*.
func ReadPoolCollector(pool *pgxpool.Pool) prometheus.Collector {
	return poolCollector{pool: pool, d: readPoolDescs}
}

type poolCollector struct {
	pool *pgxpool.Pool
	d    descs
}

// descs are the metrics of one pool.
type descs struct {
	max, total, acquire, wait, waitTime *prometheus.Desc
}

// newDescs are the metrics named prefix_*, their help ending with note.
func newDescs(prefix, note string) descs {
	return descs{
		max:      prometheus.NewDesc(prefix+"_max_conns", "The pool's configured size (CONTRACTD_DB_MAX_CONNS)"+note+".", nil, nil),
		total:    prometheus.NewDesc(prefix+"_conns", "Connections open, by whether a request holds them"+note+".", []string{"state"}, nil),
		acquire:  prometheus.NewDesc(prefix+"_acquires_total", "Connections handed to requests"+note+".", nil, nil),
		wait:     prometheus.NewDesc(prefix+"_waits_total", "Acquires that had to wait for a connection"+note+".", nil, nil),
		waitTime: prometheus.NewDesc(prefix+"_acquire_seconds_total", "Time requests spent acquiring connections, waits included"+note+".", nil, nil),
	}
}

var (
	poolDescs     = newDescs("contractd_db_pool", "")
	readPoolDescs = newDescs("contractd_db_read_pool", " (the read pool, CONTRACTD_DB_READ_URL)")
)

func (p poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.d.max, p.d.total, p.d.acquire, p.d.wait, p.d.waitTime} {
		ch <- d
	}
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := p.pool.Stat()
	ch <- prometheus.MustNewConstMetric(p.d.max, prometheus.GaugeValue, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(p.d.total, prometheus.GaugeValue, float64(st.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(p.d.total, prometheus.GaugeValue, float64(st.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(p.d.acquire, prometheus.CounterValue, float64(st.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(p.d.wait, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(p.d.waitTime, prometheus.CounterValue, st.AcquireDuration().Seconds())
}
