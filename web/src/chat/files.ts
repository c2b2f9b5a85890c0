// Attachments: upload into a channel, read a file's name, type and size
// (`GET /v1/files/{id}/meta`), and download with the bearer token.

import { api } from "../net/api";
import type { FileInfo } from "./types";

const infos = new Map<string, Promise<FileInfo>>();

export async function uploadFile(channelId: string, file: File): Promise<FileInfo> {
  const form = new FormData();
  form.append("channel_id", channelId); // the server wants channel_id before the file
  form.append("file", file, file.name);
  const answer = await api<{ file: FileInfo }>("POST", "/v1/files", { form });
  infos.set(answer.file.id, Promise.resolve(answer.file));
  return answer.file;
}

export function fileInfo(fileId: string): Promise<FileInfo> {
  let info = infos.get(fileId);
  if (!info) {
    info = api<{ file: FileInfo }>("GET", `/v1/files/${fileId}/meta`).then((answer) => answer.file);
    info.catch(() => infos.delete(fileId)); // try again next time
    infos.set(fileId, info);
  }
  return info;
}

export async function downloadFile(fileId: string): Promise<Blob> {
  const response = await api<Response>("GET", `/v1/files/${fileId}`, { raw: true });
  return response.blob();
}
