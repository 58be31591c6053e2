/* Out-of-line wrappers of libfabric's static-inline calls, so that Rust can
 * link against them. Each forwards its arguments unchanged. */
#ifndef MAMBA_FABRIC_SHIM_H
#define MAMBA_FABRIC_SHIM_H

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>

uint32_t mfi_version(void);
struct fi_info *mfi_allocinfo(void);
int mfi_close(struct fid *fid);
int mfi_domain(struct fid_fabric *fabric, struct fi_info *info,
               struct fid_domain **domain);
int mfi_endpoint(struct fid_domain *domain, struct fi_info *info,
                 struct fid_ep **ep);
int mfi_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr,
                struct fid_cq **cq);
int mfi_av_open(struct fid_domain *domain, struct fi_av_attr *attr,
                struct fid_av **av);
int mfi_ep_bind(struct fid_ep *ep, struct fid *bfid, uint64_t flags);
int mfi_enable(struct fid_ep *ep);
int mfi_getname(struct fid_ep *ep, void *addr, size_t *addrlen);
int mfi_av_insert(struct fid_av *av, const void *addr, size_t count,
                  fi_addr_t *fi_addr, uint64_t flags);
int mfi_mr_reg(struct fid_domain *domain, const void *buf, size_t len,
               uint64_t access, uint64_t requested_key, uint64_t flags,
               struct fid_mr **mr);
uint64_t mfi_mr_key(struct fid_mr *mr);
void *mfi_mr_desc(struct fid_mr *mr);
ssize_t mfi_read(struct fid_ep *ep, void *buf, size_t len, void *desc,
                 fi_addr_t src_addr, uint64_t addr, uint64_t key,
                 void *context);
ssize_t mfi_tsend(struct fid_ep *ep, const void *buf, size_t len, void *desc,
                  fi_addr_t dest_addr, uint64_t tag, void *context);
ssize_t mfi_trecv(struct fid_ep *ep, void *buf, size_t len, void *desc,
                  fi_addr_t src_addr, uint64_t tag, uint64_t ignore,
                  void *context);
ssize_t mfi_cq_read(struct fid_cq *cq, void *buf, size_t count);
ssize_t mfi_cq_readerr(struct fid_cq *cq, struct fi_cq_err_entry *buf,
                       uint64_t flags);
const char *mfi_cq_strerror(struct fid_cq *cq, int prov_errno,
                            const void *err_data, char *buf, size_t len);

#endif
