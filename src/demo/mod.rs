//! `fiblab demo NAME`: the concurrency primitives of seeds 002 and 003, each shown
//! running — small, bounded, measured demonstrations that print what happened in
//! numbers. Where fiblab uses a primitive for real, the demo says where
//! (`docs/PRIMITIVES.md` maps every primitive the seeds name to its demo and its use).
//!
//! Each demo is a module with a function that measures and returns a typed outcome
//! (what the tests check: lost updates, a detected cycle, a reaped zombie) and a
//! report that turns the outcome into lines for a person. [`DEMOS`] is the registry:
//! `fiblab demo` lists it, `fiblab demo NAME` runs one.

use std::io;

pub mod deadlock;
pub mod processes;
pub mod queues;
pub mod race;
pub mod scheduling;
pub mod semaphore;
pub mod waiting;

/// One demo: its name, the seed section it comes from, one line, and the function
/// that runs it and prints its report.
#[derive(Debug, Clone, Copy)]
pub struct Demo {
    pub name: &'static str,
    /// The seed document and section, in the seed's words.
    pub seed: &'static str,
    pub summary: &'static str,
    /// Where fiblab uses the primitive for real, or "nowhere" with why.
    pub used_in: &'static str,
    pub run: fn(&mut dyn io::Write) -> io::Result<()>,
}

/// Every demo, in the order the seeds teach them.
pub const DEMOS: &[Demo] = &[
    Demo {
        name: "processes",
        seed: "002 进程对象及其他方法: 僵尸进程, 孤儿进程, 守护进程; 守护线程",
        summary: "a zombie seen in /proc and reaped; an orphan re-parented; a daemon thread dies with its process",
        used_in: "src/process/mod.rs (children die with their parent: PR_SET_PDEATHSIG; procpool and prefork reap theirs)",
        run: processes::run,
    },
    Demo {
        name: "race",
        seed: "002 互斥锁, 线程互斥锁 (Mutual exclusion)",
        summary: "two threads, one counter, a separate load and store: lost updates counted, then none with a Mutex or an atomic",
        used_in: "src/shutdown.rs (the live-connection table behind a Mutex), src/load (counters as atomics)",
        run: race::run,
    },
    Demo {
        name: "deadlock",
        seed: "002 死锁与递归锁",
        summary: "two threads take two locks in opposite order: the wait-for cycle found and printed; a thread re-entering its own lock; the fixes",
        used_in: "nowhere by design: fiblab never holds two locks at once",
        run: deadlock::run,
    },
    Demo {
        name: "semaphore",
        seed: "002 信号量 (Semaphore)",
        summary: "a counting semaphore lets at most K of N threads compute fib at once; then `serve --model threads --max-inflight K` driven by more clients than K: the concurrency observed against K",
        used_in: "src/pool.rs (Semaphore), src/models/threads.rs (--max-inflight)",
        run: semaphore::run,
    },
    Demo {
        name: "event",
        seed: "002 Event事件",
        summary: "threads wait on one event until another thread sets it: how long each waited after the set",
        used_in: "src/shutdown.rs (the shutdown signal every loop waits on)",
        run: queues::run_event,
    },
    Demo {
        name: "queue",
        seed: "002 队列, 线程q (Queue, LifoQueue, PriorityQueue)",
        summary: "the same items through a FIFO, a LIFO and a priority queue: the order each gives back",
        used_in: "src/pool.rs (the bounded FIFO behind every pool)",
        run: queues::run_queue,
    },
    Demo {
        name: "producer-consumer",
        seed: "002 生产者、消费者模型 (JoinableQueue)",
        summary: "producers and consumers over a bounded queue, and \"all tasks done\" as JoinableQueue.join() gives: items, waits for room, and the join",
        used_in: "src/pool.rs (threadpool's and the offload pool's bounded queue)",
        run: queues::run_producer_consumer,
    },
    Demo {
        name: "pool",
        seed: "002 进程池与线程池; 003 池 (submit, result, add_done_callback)",
        summary: "fib jobs submitted to a thread pool: futures waited on, and a done-callback run on the worker",
        used_in: "src/offload.rs (submit with a done-callback that wakes the loop)",
        run: queues::run_pool,
    },
    Demo {
        name: "scheduling",
        seed: "002 进程调度: 先来先服务, 短作业优先, 时间片轮转法+多级反馈队列",
        summary: "fib jobs of measured cost under first-come first-served, shortest job first and round robin with a multilevel feedback queue: waiting and turnaround",
        used_in: "nowhere: the kernel schedules fiblab's threads; tokio and the coroutine executor run tasks first-come first-served",
        run: scheduling::run,
    },
    Demo {
        name: "waiting",
        seed: "003 协程: IO密集型 / 计算密集型 (switching helps only when tasks wait)",
        summary: "two tasks of three sleeps, serial and overlapped (threads, coroutines, async): about twice as fast overlapped; two CPU-bound tasks: switching does not help",
        used_in: "src/downstream (--downstream: requests that wait, each model overlapping the waits in its own style)",
        run: waiting::run,
    },
];

/// Looks a demo up by name.
pub fn find(name: &str) -> Option<&'static Demo> {
    DEMOS.iter().find(|d| d.name == name)
}

/// `fiblab demo` with no name: the list.
pub fn list(out: &mut dyn io::Write) -> io::Result<()> {
    for d in DEMOS {
        writeln!(out, "{:<18} {}", d.name, d.summary)?;
        writeln!(out, "{:<18} seed {}", "", d.seed)?;
    }
    Ok(())
}

/// Nanoseconds per operation, for the reports.
fn per_op_ns(elapsed: std::time::Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}

/// A primitive the seeds teach: where (seed and section), its demo, and the files in
/// which fiblab uses its Rust counterpart (a test checks that every file exists, so a
/// rename breaks the build, not `docs/PRIMITIVES.md`).
#[derive(Debug, Clone, Copy)]
pub struct Primitive {
    pub name: &'static str,
    pub seed: &'static str,
    /// A `fiblab demo` name, or how else to see it running.
    pub demo: &'static str,
    pub rust: &'static str,
    pub used_in: &'static [&'static str],
}

/// Every primitive of seeds 002 and 003, in the seeds' order.
pub const PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "scheduling: first-come first-served, shortest job first, round robin + multilevel feedback queue",
        seed: "002 进程调度",
        demo: "scheduling",
        rust: "the kernel's scheduler; tokio and the coroutine executor run ready tasks first-come first-served",
        used_in: &["src/models/coroutines/mod.rs"],
    },
    Primitive {
        name: "starting a process, join",
        seed: "002 开启进程的两种方式, join方法",
        demo: "processes",
        rust: "std::process::Command, Child::wait",
        used_in: &[
            "src/process/mod.rs",
            "src/models/procpool.rs",
            "src/models/prefork.rs",
        ],
    },
    Primitive {
        name: "data isolation between processes",
        seed: "002 进程间数据隔离",
        demo: "`fiblab serve --model procpool` (workers share nothing: requests and replies cross a pipe)",
        rust: "separate address spaces; framed messages over pipes",
        used_in: &["src/models/procpool.rs", "src/models/isolates.rs"],
    },
    Primitive {
        name: "zombie process",
        seed: "002 僵尸进程",
        demo: "processes",
        rust: "Child::wait reaps; a supervisor thread reaps dead workers",
        used_in: &["src/models/procpool.rs", "src/models/prefork.rs"],
    },
    Primitive {
        name: "orphan process",
        seed: "002 孤儿进程",
        demo: "processes",
        rust: "PR_SET_PDEATHSIG: children die with the thread that forked them (one spawner thread that lives as long as the process)",
        used_in: &["src/process/mod.rs"],
    },
    Primitive {
        name: "daemon process",
        seed: "002 守护进程",
        demo: "processes",
        rust: "PR_SET_PDEATHSIG (a daemonic child ends with its parent)",
        used_in: &["src/process/mod.rs"],
    },
    Primitive {
        name: "mutual exclusion (process and thread locks)",
        seed: "002 互斥锁, 线程互斥锁",
        demo: "race",
        rust: "std::sync::Mutex, atomics (fetch_add)",
        used_in: &["src/shutdown.rs", "src/load/worker/mod.rs", "src/pool.rs"],
    },
    Primitive {
        name: "queues between processes (IPC)",
        seed: "002 队列, IPC机制",
        demo: "queue",
        rust: "pipes and socket pairs",
        used_in: &[
            "src/models/procpool.rs",
            "src/offload.rs",
            "src/models/uring/mod.rs",
        ],
    },
    Primitive {
        name: "producer-consumer, JoinableQueue",
        seed: "002 生产者、消费者模型",
        demo: "producer-consumer",
        rust: "Mutex + Condvar + VecDeque (WorkQueue)",
        used_in: &["src/pool.rs", "src/models/threadpool.rs"],
    },
    Primitive {
        name: "starting a thread, join",
        seed: "002 开启线程的两种方式, 线程对象的join方法",
        demo: "race",
        rust: "std::thread::spawn, JoinHandle::join",
        used_in: &["src/models/threads.rs", "src/models/per_core.rs"],
    },
    Primitive {
        name: "data shared between threads",
        seed: "002 线程间的数据共享",
        demo: "race",
        rust: "Arc, with a Mutex or atomics for what is written",
        used_in: &["src/shutdown.rs"],
    },
    Primitive {
        name: "daemon thread",
        seed: "002 守护线程",
        demo: "processes",
        rust: "a thread not joined ends with its process; connection threads are counted, not joined",
        used_in: &["src/models/threads.rs", "src/shutdown.rs"],
    },
    Primitive {
        name: "the GIL",
        seed: "002 GIL全局解释锁",
        demo: "`fiblab serve --gil` and `fiblab bench python` (docs/GIL.md)",
        rust: "an emulated interpreter lock with CPython's switch interval",
        used_in: &["src/gil.rs"],
    },
    Primitive {
        name: "deadlock",
        seed: "002 死锁",
        demo: "deadlock",
        rust: "a wait-for graph over instrumented locks (fiblab never holds two locks at once)",
        used_in: &["src/demo/deadlock.rs"],
    },
    Primitive {
        name: "recursive lock (RLock)",
        seed: "002 递归锁",
        demo: "deadlock",
        rust: "an owner and a count over Mutex + Condvar",
        used_in: &["src/demo/deadlock.rs"],
    },
    Primitive {
        name: "semaphore",
        seed: "002 信号量",
        demo: "semaphore",
        rust: "a count over Mutex + Condvar (pool::Semaphore), `serve --model threads --max-inflight K`",
        used_in: &["src/pool.rs", "src/models/threads.rs"],
    },
    Primitive {
        name: "event",
        seed: "002 Event事件",
        demo: "event",
        rust: "a flag over Mutex + Condvar; fiblab's shutdown signal",
        used_in: &["src/shutdown.rs"],
    },
    Primitive {
        name: "thread queues: FIFO, LIFO, priority",
        seed: "002 线程q",
        demo: "queue",
        rust: "VecDeque, Vec, BinaryHeap",
        used_in: &["src/pool.rs"],
    },
    Primitive {
        name: "thread pool and process pool",
        seed: "002 进程池与线程池; 003 池",
        demo: "pool",
        rust: "worker threads over a WorkQueue; worker processes over pipes",
        used_in: &[
            "src/offload.rs",
            "src/models/threadpool.rs",
            "src/models/procpool.rs",
        ],
    },
    Primitive {
        name: "futures and done-callbacks",
        seed: "003 池 (submit, result, add_done_callback)",
        demo: "pool",
        rust: "a callback run on the worker; a Future for async loops",
        used_in: &["src/offload.rs"],
    },
    Primitive {
        name: "coroutines and green threads (gevent, monkey patching)",
        seed: "002 协程; 003 协程",
        demo: "waiting",
        rust: "async tasks on an executor",
        used_in: &["src/models/coroutines/mod.rs", "src/models/tokio/mod.rs"],
    },
    Primitive {
        name: "non-blocking I/O",
        seed: "003 非阻塞IO",
        demo: "`fiblab serve --model nonblocking`",
        rust: "set_nonblocking, WouldBlock",
        used_in: &["src/models/nonblocking.rs"],
    },
    Primitive {
        name: "I/O multiplexing: select, selectors (epoll)",
        seed: "003 IO多路复用, selectors",
        demo: "`fiblab serve --model select`, `--model epoll`",
        rust: "select(2); mio over epoll",
        used_in: &["src/models/select.rs", "src/models/epoll.rs"],
    },
];

/// `docs/PRIMITIVES.md`: every primitive, its demo and where fiblab uses it.
pub fn primitives_markdown() -> String {
    let mut page = String::from(
        "# The seeds' concurrency primitives in fiblab\n\nGenerated from `fiblab::demo::PRIMITIVES` (`FIBLAB_BLESS=1 cargo test --test docs` rewrites it; a test checks that every file named exists). Run a demo with `fiblab demo NAME`; `fiblab demo` lists them.\n\n| primitive | seed | see it running | Rust counterpart | used in |\n|---|---|---|---|---|\n",
    );
    for p in PRIMITIVES {
        let demo = match find(p.demo) {
            Some(d) => format!("`fiblab demo {}`", d.name),
            None => p.demo.to_string(),
        };
        let files: Vec<String> = p.used_in.iter().map(|f| format!("[{f}](../{f})")).collect();
        page.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            p.name,
            p.seed,
            demo,
            p.rust,
            files.join(", ")
        ));
    }
    page.push_str(
        "\n## The demos\n\n| demo | seed | what it shows | in fiblab |\n|---|---|---|---|\n",
    );
    for d in DEMOS {
        page.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.name, d.seed, d.summary, d.used_in
        ));
    }
    page
}
