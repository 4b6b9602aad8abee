// A tc ingress program for an "uplink" device that delivers IPv4 packets for one pod straight
// into the pod's network namespace with bpf_redirect_peer, as eBPF datapaths (Cilium's
// bpf_redirect_peer, Calico's bpfRedirectToPeer) do: the packet goes from the uplink's ingress
// to the ingress of the pod's eth0 without ever being received or sent by the pod's host-side
// veth, so a capture on that veth never sees it.
//
// Built by tests/cli_redirect_peer.rs with clang -target bpf and these definitions:
//   POD_IP      the pod's IPv4 address, in network byte order, as a u32 literal
//   HOST_VETH   the ifindex of the pod's host-side veth (redirect_peer names the peer's host end)
//   POD_MAC     the pod eth0's MAC, six comma-separated bytes
//   HOST_MAC    the host veth's MAC, six comma-separated bytes
// Packets for other addresses pass untouched (TC_ACT_OK). No libbpf headers are needed: the one
// helper is declared by its number, as bpf_helper_defs.h would.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))

static long (*bpf_redirect_peer)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect_peer;

SEC("tc")
int redirect_to_pod(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	const unsigned char pod_mac[ETH_ALEN] = {POD_MAC};
	const unsigned char host_mac[ETH_ALEN] = {HOST_MAC};

	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != __builtin_bswap16(ETH_P_IP) || ip->daddr != POD_IP)
		return TC_ACT_OK;
	// As the pod's own veth would have delivered it: from the host end, to the pod.
	__builtin_memcpy(eth->h_dest, pod_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, host_mac, ETH_ALEN);
	return bpf_redirect_peer(HOST_VETH, 0);
}

char _license[] SEC("license") = "GPL";
