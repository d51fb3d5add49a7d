//! "Sent" notification as btcd's (issue 14, item 6): a send queues when it is called, and
//! every send path can hand back a `Sent` that resolves when the frame has been written, or
//! with the reason it never will be.

mod common;

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{BlockHash, Txid};
use common::*;
use verack::peer::{IgnoreMessages, SendError, Sent};

fn tx(n: u8) -> Inventory {
    Inventory::Transaction(Txid::from_byte_array([n; 32]))
}

/// Whether `sent` resolves within `within` of (paused) time; consumes nothing on timeout.
async fn resolves(sent: &mut Sent, within: Duration) -> Option<Result<(), SendError>> {
    tokio::time::timeout(within, sent).await.ok()
}

#[tokio::test(start_paused = true)]
async fn send_and_wait_queues_when_called_not_when_polled() {
    let (peer, mut remote) =
        handshaked_with_script(config(), 70016, true, vec![], DUPLEX_BUFFER).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    // Never polled, then dropped: the message still goes, and before the later `send`.
    let first = handle.send_and_wait(NetworkMessage::Ping(1));
    handle.send(NetworkMessage::Ping(2)).unwrap();
    drop(first);
    assert_eq!(
        remote.recv().await.unwrap(),
        NetworkMessage::Ping(1),
        "queued by the call"
    );
    assert_eq!(remote.recv().await.unwrap(), NetworkMessage::Ping(2));
    // Awaiting it still waits for the write, as the async fn did.
    handle
        .send_and_wait(NetworkMessage::GetAddr)
        .await
        .expect("written");
    assert_eq!(handle.stats().bytes_sent_per_command["getaddr"], 24);
    handle.disconnect();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn send_all_notify_resolves_only_once_the_batch_is_written() {
    // A 4 KiB pipe: 200 `inv`s (12 KB) cannot all be written until the remote reads.
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], 4096).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let before = handle.stats().messages_sent;
    let batch: Vec<NetworkMessage> = (0..200u8)
        .map(|i| NetworkMessage::Inv(vec![tx(i)]))
        .collect();
    let mut sent = handle.send_all_notify(&batch).unwrap();
    assert!(
        resolves(&mut sent, Duration::from_secs(1)).await.is_none(),
        "not written while the pipe is full"
    );
    let reader = tokio::spawn(async move {
        for i in 0..200u8 {
            assert_eq!(
                remote.recv_skip_pings().await.unwrap(),
                NetworkMessage::Inv(vec![tx(i)])
            );
        }
        remote
    });
    sent.await.expect("written");
    // All 200 counted as written when it resolves (a ping may have gone out meanwhile).
    assert!(handle.stats().messages_sent >= before + 200);
    assert_eq!(handle.stats().bytes_sent_per_command["inv"], 200 * 61);
    let _remote = reader.await.unwrap();
    handle.disconnect();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn queue_inventory_notify_resolves_when_the_trickled_inv_is_written() {
    let (peer, mut remote) =
        handshaked_with_script(config(), 70016, true, vec![], DUPLEX_BUFFER).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let sent = handle.queue_inventory_notify([tx(1), tx(2)]).unwrap();
    assert_eq!(handle.stats().bytes_sent_per_command.get("inv"), None);
    sent.await.expect("announced");
    // Resolved only after the trickled `inv` went out, not when queued.
    assert_eq!(
        handle.stats().bytes_sent_per_command["inv"],
        24 + 1 + 2 * 36
    );
    assert_eq!(
        remote.recv_skip_pings().await.unwrap(),
        NetworkMessage::Inv(vec![tx(1), tx(2)])
    );
    // Nothing to announce (both known now): resolves at once.
    let mut none = handle.queue_inventory_notify([tx(1), tx(2)]).unwrap();
    assert!(matches!(
        resolves(&mut none, Duration::ZERO).await,
        Some(Ok(()))
    ));
    // A block goes at once.
    let block = Inventory::Block(BlockHash::from_byte_array([9; 32]));
    handle
        .queue_inventory_notify([block])
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        remote.recv_skip_pings().await.unwrap(),
        NetworkMessage::Inv(vec![block])
    );
    handle.disconnect();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn push_helpers_hand_back_completions() {
    let (peer, mut remote) =
        handshaked_with_script(config(), 70016, true, vec![], DUPLEX_BUFFER).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let locator = vec![BlockHash::from_byte_array([1; 32])];
    let sent = handle
        .push_getheaders_notify(locator.clone(), BlockHash::all_zeros())
        .unwrap()
        .expect("sent");
    sent.await.unwrap();
    assert!(matches!(
        remote.recv_skip_pings().await.unwrap(),
        NetworkMessage::GetHeaders(_)
    ));
    assert!(
        handle
            .push_getheaders_notify(locator.clone(), BlockHash::all_zeros())
            .unwrap()
            .is_none(),
        "duplicate filtered: nothing sent"
    );
    handle
        .push_getblocks_notify(locator, BlockHash::all_zeros())
        .unwrap()
        .expect("sent")
        .await
        .unwrap();
    let (n, none) = handle.push_addresses_notify(&[]).unwrap();
    assert!(n == 0 && none.is_none());
    handle.disconnect();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn completions_fail_with_the_reason_the_frame_is_never_written() {
    let (peer, _remote) =
        handshaked_with_script(config(), 70016, true, vec![], DUPLEX_BUFFER).await;
    let handle = peer.handle();
    // Immediate failures, nothing queued.
    let oversize = NetworkMessage::Unknown {
        command: CommandString::try_from_static("big").unwrap(),
        payload: vec![0; 4_000_001],
    };
    assert!(matches!(
        handle.send_notify(oversize.clone()),
        Err(SendError::Oversize(_))
    ));
    assert!(matches!(
        handle.send_and_wait(oversize).await,
        Err(SendError::Oversize(_))
    ));
    assert!(matches!(
        handle.send_and_wait(NetworkMessage::Verack).await,
        Err(SendError::HandshakeMessage { .. })
    ));
    // Queued, but the peer is dropped without ever running: never written.
    let queued = handle.send_notify(NetworkMessage::GetAddr).unwrap();
    let trickled = handle.queue_inventory_notify([tx(3)]).unwrap();
    drop(peer);
    assert!(matches!(queued.await, Err(SendError::Disconnected)));
    assert!(matches!(trickled.await, Err(SendError::Disconnected)));
    assert!(matches!(
        handle.send_notify(NetworkMessage::GetAddr),
        Err(SendError::Disconnected)
    ));
}

#[tokio::test(start_paused = true)]
async fn queue_full_fails_the_call_and_earlier_pending_completions() {
    let mut cfg = config();
    cfg.send_queue_limit = 10_000;
    // A 1 KiB pipe the remote never reads: frames stay queued.
    let (peer, _remote) = handshaked_with_script(cfg, 70016, true, vec![], 1024).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let big = |n: usize| NetworkMessage::Unknown {
        command: CommandString::try_from_static("blob").unwrap(),
        payload: vec![0; n],
    };
    let mut pending = handle.send_notify(big(6_000)).unwrap();
    assert!(resolves(&mut pending, Duration::from_secs(1))
        .await
        .is_none());
    let second = handle.send_notify(big(6_000));
    assert!(
        matches!(second, Err(SendError::QueueFull { .. })),
        "{second:?}"
    );
    assert!(matches!(pending.await, Err(SendError::Disconnected)));
    let reason = run.await.unwrap();
    assert!(
        matches!(reason, verack::peer::DisconnectReason::SendQueueFull { .. }),
        "{reason:?}"
    );
}
