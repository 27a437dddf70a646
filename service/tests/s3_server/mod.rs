//! An S3-compatible server for tests: `s3s-fs` (which checks SigV4 signatures) on a
//! free loopback port, with a bucket `payloads`, in a thread of this process with its
//! own runtime (so both async and plain tests can use it). Shared by the payload-store
//! tests here and the end-to-end tests of `app`.

use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

/// Starts the server on `root`, accepting only `access`/`secret`; returns its endpoint.
pub fn s3_server(root: &Path, access: &str, secret: &str) -> String {
    std::fs::create_dir_all(root.join("payloads")).unwrap();
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(access, secret));
    let service = b.build();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let conn = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
    });
    format!("http://{addr}")
}
